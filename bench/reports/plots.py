"""Figures: one rate-distortion PNG per metric, and spectrograms for listening examples.

matplotlib with the Agg backend only (no display needed), imported inside each function.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.reports import rd
from bench.reports.load import display_codec


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with mathtext off (labels are user strings)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    # labels are user strings (checkpoint paths, item names): a '$' must print, not start mathtext
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def safe_name(text: str) -> str:
    """A file-name-safe version of a metric or codec name, distinct for distinct names.

    Names that needed changing get a short hash of the original, so 'a b' and 'a_b' never
    write the same file.
    """
    import hashlib

    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"
    if clean == text:
        return clean
    return f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


KBPS_TICKS = (0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536)


def _log_kbps_axis(ax: Any, lo: float, hi: float) -> None:
    """Log-scaled kbps axis with plain-number ticks at the usual codec bitrates."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ax.set_xscale("log")
    ticks = [t for t in KBPS_TICKS if lo / 1.2 <= t <= hi * 1.2]
    if len(ticks) > 9:
        ticks = ticks[::2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


ANCHOR_RATE_FACTOR = 3.0


def anchor_codecs(cs: dict[str, rd.Curve]) -> list[str]:
    """Single-point codecs far above every other codec's rates (a lossless PCM anchor, say).

    Drawn on the axes they would squash the curves that matter into a corner, so the plot lists
    them in a note instead (the tables keep them).
    """
    single = [c for c, cur in cs.items() if len(cur.points) == 1]
    others = [p.measured_kbps for c, cur in cs.items() if c not in single for p in cur.points]
    if not others:
        return []
    top = max(others)
    return [c for c in single if cs[c].points[0].measured_kbps > ANCHOR_RATE_FACTOR * top]


def _panels(summary_df: Any, metric: str) -> list[tuple[str, str]]:
    """The (dataset, domain) panels of a metric's figure: per dataset, all items first, then each domain."""
    block = summary_df[summary_df["metric"] == metric]
    out = []
    for dataset in sorted(set(block["dataset"])):
        doms = list(dict.fromkeys(block[block["dataset"] == dataset]["domain"]))
        doms = ["all"] + sorted(d for d in doms if d != "all")
        out += [(dataset, d) for d in doms]
    return out


def plot_rd(summary_df: Any, metric: str, out_path: str | Path, *, unit: str = "",
            higher_is_better: bool = True, pareto: bool = True) -> Path:
    """Draw the R-D curves of one metric: a panel per (dataset, domain).

    x = measured kbps (log scale; nominal kbps drawn as hollow markers on the same line), y = mean
    with its 95% bootstrap CI as a band, one line per codec, the Pareto frontier dashed in black.
    Points whose mean is over a different item set than their neighbours get a ring.
    """
    plt = _pyplot()
    panels = _panels(summary_df, metric)
    n = max(1, len(panels))
    ncols = n if n <= 3 else 2
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.0 * nrows), squeeze=False)
    flat = list(axes.reshape(-1))
    for ax in flat[n:]:
        ax.set_visible(False)
    codecs = sorted(set(summary_df[summary_df["metric"] == metric]["codec"]))
    cmap = plt.get_cmap("tab10" if len(codecs) <= 10 else "tab20")
    panel = _Panel(summary_df, metric, {c: cmap(i % cmap.N) for i, c in enumerate(codecs)}, unit=unit,
                   higher_is_better=higher_is_better, pareto=pareto)
    for ax, (dataset, domain) in zip(flat, panels):
        panel.draw(ax, dataset, domain)
    merged: dict[str, object] = {}
    for ax in flat[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            merged.setdefault(label, handle)
    if merged:
        flat[n - 1].legend(list(merged.values()), list(merged), fontsize=8, loc="best", framealpha=0.85)
    fig.suptitle(f"Rate-distortion: {metric} (mean, 95% bootstrap CI)", fontsize=11)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


class _Panel:
    """Draws the panels of one metric's R-D figure; remembers whether the ring's legend label was given."""

    def __init__(self, summary_df: Any, metric: str, colors: dict[str, Any], *, unit: str,
                 higher_is_better: bool, pareto: bool) -> None:
        self.summary_df, self.metric, self.colors, self.unit = summary_df, metric, colors, unit
        self.higher_is_better, self.pareto = higher_is_better, pareto
        self.ringed = False  # the first ring of the figure carries the legend label

    def label(self, codec: str) -> str:
        """The codec's label with its checkpoint, as the summary table names it (its ``label`` column)."""
        s = self.summary_df
        if "label" in s:
            rows = s.loc[s["codec"] == codec, "label"]
            if len(rows):
                return str(rows.iloc[0])
        return display_codec(codec)

    def draw(self, ax: Any, dataset: str, domain: str) -> None:
        """One (dataset, domain) panel: every codec's curve, the frontier, the axes and labels."""
        from bench.reports.tables import curves

        s = self.summary_df
        cs = curves(s, dataset, domain, self.metric)
        off_scale = []
        for codec in anchor_codecs(cs):
            p = cs.pop(codec).points[0]
            off_scale.append(f"{self.label(codec)}@{p.op}: {p.mean:.3g} at {p.measured_kbps:.0f} kbps")
        block = s[(s["metric"] == self.metric) & (s["dataset"] == dataset) & (s["domain"] == domain)]
        all_points: list[rd.RDPoint] = []
        for codec, cur in cs.items():
            if cur.points:
                self._curve(ax, cur, block[(block["codec"] == codec) & (~block["same_items"].astype(bool))])
                all_points += cur.points
        if self.pareto and len(cs) > 1:
            front = rd.pareto_frontier(all_points, self.higher_is_better)
            if len(front) >= 2:
                ax.plot([p.measured_kbps for p in front], [p.mean for p in front], color="black", ls="--",
                        lw=1.0, alpha=0.7, label="Pareto frontier", zorder=5)
        self._axes(ax, dataset, domain, all_points, off_scale)

    def _curve(self, ax: Any, cur: rd.Curve, marked: Any) -> None:
        """One codec: line with CI band (or bars), hollow nominal markers, rings on ``marked`` rows."""
        col = self.colors[cur.codec]
        x = cur.rates
        y = cur.qualities
        lo = np.array([p.ci_lo for p in cur.points])
        hi = np.array([p.ci_hi for p in cur.points])
        ax.plot(x, y, "-o", color=col, ms=4, lw=1.6, label=self.label(cur.codec), zorder=3)
        band = np.isfinite(lo) & np.isfinite(hi)
        if band.sum() >= 2:
            ax.fill_between(x[band], lo[band], hi[band], color=col, alpha=0.18, lw=0, zorder=2)
        elif band.any():
            ax.errorbar(x[band], y[band], yerr=[y[band] - lo[band], hi[band] - y[band]], fmt="none",
                        ecolor=col, alpha=0.6, capsize=3, zorder=2)
        nominal = np.array([p.nominal_kbps for p in cur.points])
        fin = np.isfinite(nominal) & (nominal > 0)
        ax.scatter(nominal[fin], y[fin], marker="o", facecolors="none", edgecolors=col, s=28,
                   linewidths=0.9, alpha=0.7, zorder=3)
        for xm, xn, yy in zip(x[fin], nominal[fin], y[fin]):
            ax.plot([xn, xm], [yy, yy], color=col, lw=0.6, alpha=0.5, zorder=2)
        for r in marked.itertuples():
            ax.scatter([r.measured_kbps], [r.mean], s=110, facecolors="none", edgecolors="red", linewidths=1.2,
                       zorder=4, label=None if self.ringed else "different item set")
            self.ringed = True

    def _axes(self, ax: Any, dataset: str, domain: str, points: list[rd.RDPoint], off_scale: list[str]) -> None:
        """Log kbps axis when the rates span more than 4x, title, labels (with off-scale anchors), grid."""
        rates = [p.measured_kbps for p in points if math.isfinite(p.measured_kbps) and p.measured_kbps > 0]
        if rates and max(rates) / min(rates) > 4:
            _log_kbps_axis(ax, min(rates), max(rates))
        title = domain if domain != "all" else "all items"
        ax.set_title(f"{dataset}: {title}" if dataset else title, fontsize=10)
        xlabel = "measured kbps (hollow: nominal)"
        if off_scale:
            xlabel += "\noff scale: " + "; ".join(off_scale)
        ax.set_xlabel(xlabel)
        arrow = "↑ better" if self.higher_is_better else "↓ better"
        ax.set_ylabel(f"{self.metric}" + (f" [{self.unit}]" if self.unit else "") + f"  ({arrow})")
        ax.grid(True, which="both", alpha=0.25)


def spectrogram_db(x: np.ndarray, sample_rate_hz: int, n_fft: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Magnitude spectrogram in dB re full scale (a full-scale sine reads about 0 dB)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n_fft = int(min(n_fft, max(64, 2 ** int(math.floor(math.log2(max(len(x), 64)))))))
    hop = n_fft // 4
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    win = np.hanning(n_fft)
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * win, axis=1)).T
    db = 20.0 * np.log10(np.maximum(spec * 2.0 / win.sum(), 1e-7))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    times = (np.arange(n_frames) * hop + n_fft / 2) / sample_rate_hz
    return db, freqs, times


def plot_spectrogram(x: np.ndarray, sample_rate_hz: int, out_path: str | Path, *,
                     max_freq_hz: float | None = None, floor_db: float = -100.0, width_px: int = 360,
                     height_px: int = 128) -> Path:
    """A ``width_px`` x ``height_px`` spectrogram image (low frequencies at the bottom; dB re full scale, fixed colour range
    ``floor_db..0`` so images compare). Drawn straight from the array without axes, because a
    full matplotlib figure per clip made reports slow; the page states the ranges."""
    import matplotlib
    from matplotlib.image import imsave

    db, freqs, _ = spectrogram_db(x, sample_rate_hz)
    if max_freq_hz is not None:
        db = db[freqs <= max_freq_hz]
    rows = np.linspace(0, db.shape[0] - 1, min(height_px, db.shape[0])).round().astype(int)
    cols = np.linspace(0, db.shape[1] - 1, width_px).round().astype(int)
    db = db[rows][:, cols]
    norm = np.clip((db - floor_db) / (0.0 - floor_db), 0.0, 1.0)
    rgba = matplotlib.colormaps["magma"](norm[::-1])  # low frequencies at the bottom
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    imsave(out, rgba)
    return out
