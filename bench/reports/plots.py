"""Figures: one rate-distortion PNG per metric, and spectrograms for listening examples.

matplotlib with the Agg backend only (no display needed), imported inside each function.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
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


#: human names of the harness's metrics, for titles (the unit comes from the metric's spec)
METRIC_NAMES = {
    "mel_distance": "Mel distance", "stft_distance": "Multi-resolution STFT distance",
    "si_sdr": "SI-SDR", "lsd": "Log-spectral distance", "pesq_wb": "PESQ (wideband)",
    "pesq_nb": "PESQ (narrowband)", "stoi": "STOI", "estoi": "ESTOI", "visqol": "ViSQOL",
    "wer": "Word error rate", "cer": "Character error rate",
}

FIGURE_FORMATS = ("png", "pdf", "svg")  # every figure is written in each, beside each other (same stem)


def metric_title(metric: str, unit: str = "") -> str:
    """A metric's human name with its unit, for titles and axes: ``SI-SDR (dB)``, ``Mel distance``."""
    name = METRIC_NAMES.get(metric, metric.replace("_", " "))
    return f"{name} ({unit})" if unit and unit not in name else name


def save_figure(fig: Any, out_path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (for the pages), PDF and SVG (for papers) under ``out_path``'s stem; returns the PNG."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    for fmt in FIGURE_FORMATS:
        fig.savefig(png.with_suffix(f".{fmt}"), dpi=dpi, format=fmt)
    return png


def curve_key(codec: str, op: str) -> str:
    """The curve an operating point belongs to: one checkpoint in one mode.

    EuleroDec names its points ``<model>`` and ``<model>-n<k>`` (``6k``, ``6k-n4``): one curve per model.
    VRVQ's ``L<level>`` points (variable rate) and ``n<k>`` points (constant rate) are two curves.
    Any other codec is one curve.
    """
    base = re.split(r"[:\[@]", codec, maxsplit=1)[0].lower()
    if base.startswith("eulerodec"):
        return f"{codec} [{re.sub(r'-n[0-9]+$', '', op)}]"
    if base.startswith("vrvq"):
        if re.fullmatch(r"L[0-9.eE+-]+", op):
            return f"{codec} [vbr]"
        if re.fullmatch(r"n[0-9]+", op):
            return f"{codec} [cbr]"
    return codec


def curve_mode(key: str, codec: str) -> str:
    """The mode part of a :func:`curve_key` (``6k``, ``vbr``), empty for a one-curve codec."""
    return key[len(codec) + 2:-1] if key != codec else ""


def split_curves(block: Any) -> dict[str, rd.Curve]:
    """The R-D curves of one (panel, metric) block of summary rows, one per :func:`curve_key`."""
    out: dict[str, rd.Curve] = {}
    for r in block.itertuples():
        key = curve_key(str(r.codec), str(r.op))
        out.setdefault(key, rd.Curve(str(r.codec))).points.append(
            rd.RDPoint(str(r.codec), str(r.op), r.nominal_kbps, r.measured_kbps, r.mean, r.ci_lo, r.ci_hi, int(r.n_items)))
    return {k: c.sorted() for k, c in sorted(out.items())}


_RATE_KEYS = ("sample_rate_hz", "sample_rate", "rate_hz", "sr")


def _extra_rate(extra: Any) -> int | None:
    """The sample rate an item's ``extra`` JSON records, if any."""
    import json

    try:
        d = json.loads(extra) if isinstance(extra, str) else extra
    except (TypeError, ValueError):
        return None
    if isinstance(d, dict):
        for k in _RATE_KEYS:
            if isinstance(d.get(k), (int, float)) and d[k] > 0:
                return int(d[k])
    return None


def item_rates(data: Any) -> dict[str, int | None]:
    """Each item's own sample rate (the reference's, codec independent); None where nothing records it.

    From the item's metadata (``extra``) when the dataset recorded it, else from the run's cache:
    every cached reconstruction is stored at its item's rate, and its JSON metadata says which.
    """
    rates: dict[str, int | None] = {}
    for r in data.items.itertuples():
        rates[str(r.item_id)] = _extra_rate(getattr(r, "extra", None))
    missing = {i for i, v in rates.items() if v is None}
    if missing and "cache_key" in data.coded:
        try:
            from bench.cache import ReconCache

            cache = ReconCache(data.manifest.get("cache_dir"), readonly=True)
        except Exception:  # noqa: BLE001 - no readable cache: the rates stay unknown
            return rates
        for r in data.coded[data.coded["item_id"].isin(missing)].itertuples():
            if rates.get(str(r.item_id)) is None and isinstance(r.cache_key, str) and r.cache_key:
                try:
                    meta = cache.meta(r.cache_key)
                except Exception:  # noqa: BLE001 - damaged entry: try the next pair
                    meta = None
                if meta and isinstance(meta.get("sample_rate_hz"), (int, float)):
                    rates[str(r.item_id)] = int(meta["sample_rate_hz"])
    return rates


def rate_text(rate: int | None) -> str:
    """``24 kHz``, ``44.1 kHz``; ``rate not recorded`` for None."""
    return "rate not recorded" if rate is None else f"{rate / 1000:g} kHz"


@dataclass
class PanelSpec:
    """One panel of an R-D figure: the summary rows it draws and what it pools, for its caption."""

    dataset: str
    domain: str
    rate: int | None
    rows: Any  # the summary rows of this panel's metric
    n_items: int

    @property
    def caption(self) -> str:
        """What the panel pools: ``speech, 24 kHz, 30 items``."""
        return f"{self.domain}, {rate_text(self.rate)}, {self.n_items} items"


def _groups(data: Any, metric: str, rates: dict[str, int | None]) -> Any:
    """The results of ``metric`` with a ``rate`` column (-1 for an unknown rate, so groupby keeps them)."""
    res = data.results[data.results["metric"] == metric].copy()
    res["rate"] = [rates.get(str(i)) or -1 for i in res["item_id"]]
    return res


def rate_panels(summary_df: Any, metric: str, data: Any = None, *, n_boot: int | None = None,
                seed: int = 0) -> list[PanelSpec]:
    """The panels of a metric's figure: one per (dataset, domain, item sample rate); none pools two rates.

    Reuses the summary's rows where a (dataset, domain) has one rate; otherwise summarises each
    rate's items on their own (same bootstrap settings). Without ``data`` the rates are not known:
    one panel per (dataset, domain), captioned so.
    """
    block = summary_df[summary_df["metric"] == metric]
    if data is None:
        return [PanelSpec(ds, dom, None, block[(block["dataset"] == ds) & (block["domain"] == dom)],
                          int(block[(block["dataset"] == ds) & (block["domain"] == dom)]["n_items"].max()))
                for ds, dom in _domain_panels(block)]
    res = _groups(data, metric, item_rates(data))
    out: list[PanelSpec] = []
    for ds in sorted(set(res["dataset"])):
        in_ds = res[res["dataset"] == ds]
        doms = sorted(set(in_ds["domain"]))
        for dom in doms:
            in_dom = in_ds[in_ds["domain"] == dom]
            rates_here = sorted(set(in_dom["rate"]))
            for rate in rates_here:
                ids = set(in_dom.loc[in_dom["rate"] == rate, "item_id"])
                if len(rates_here) == 1:  # the summary already holds exactly these items
                    rows = block[(block["dataset"] == ds) & (block["domain"] == (dom if len(doms) > 1 else "all"))]
                else:
                    rows = _summarise_items(data, metric, ids, n_boot, seed)
                out.append(PanelSpec(ds, dom, None if rate < 0 else int(rate), rows, len(ids)))
    return out


def _domain_panels(block: Any) -> list[tuple[str, str]]:
    """(dataset, domain) panels of summary rows alone: each domain, or ``all`` where one domain was scored."""
    out = []
    for dataset in sorted(set(block["dataset"])):
        doms = sorted(set(block[block["dataset"] == dataset]["domain"]) - {"all"})
        out += [(dataset, d) for d in (doms or ["all"])]
    return out


def _summarise_items(data: Any, metric: str, item_ids: set[str], n_boot: int | None, seed: int) -> Any:
    """Summary rows of ``metric`` over ``item_ids`` only (one domain, one rate of one dataset)."""
    import copy

    from bench.reports import stats, tables

    sub = copy.copy(data)
    sub.items = data.items[data.items["item_id"].isin(item_ids)]
    sub.results = data.results[(data.results["metric"] == metric) & data.results["item_id"].isin(item_ids)]
    sub.skipped = data.skipped[(data.skipped["metric"] == metric) & data.skipped["item_id"].isin(item_ids)]
    sub.coded = data.coded[data.coded["item_id"].isin(item_ids)]
    s = tables.summary(sub, n_boot=n_boot or stats.DEFAULT_N_BOOT, seed=seed)
    return s[s["domain"] == "all"]


def plot_rd(summary_df: Any, metric: str, out_path: str | Path, *, unit: str = "",
            higher_is_better: bool = True, pareto: bool = True, data: Any = None,
            n_boot: int | None = None, seed: int = 0) -> Path:
    """Draw the R-D curves of one metric: a panel per (dataset, domain, sample rate), as PNG, PDF and SVG.

    ``data`` (the run) tells each item's sample rate so that no panel pools two rates (without it,
    one panel per domain, captioned "rate not recorded"). x = measured kbps (log scale; nominal kbps
    as hollow markers), y = mean with its 95% bootstrap CI as a band, one line per checkpoint and
    mode (:func:`curve_key`), the Pareto frontier light and behind the curves. Points whose mean is
    over a different item set than their neighbours get a ring. Returns the PNG's path.
    """
    plt = _pyplot()
    panels = rate_panels(summary_df, metric, data, n_boot=n_boot, seed=seed)
    n = max(1, len(panels))
    ncols = min(n, 2)  # every panel drawn at one size, two abreast: 1190 px, at 1:1 on a 1280 px screen
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.3 * nrows), squeeze=False)
    flat = list(axes.reshape(-1))
    for ax in flat[n:]:
        ax.set_visible(False)
    block = summary_df[summary_df["metric"] == metric]
    keys = sorted({curve_key(str(r.codec), str(r.op)) for r in block.itertuples()}
                  | {curve_key(str(r.codec), str(r.op)) for p in panels for r in p.rows.itertuples()})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    panel = _Panel(summary_df, metric, {k: cmap(i % cmap.N) for i, k in enumerate(keys)}, unit=unit,
                   higher_is_better=higher_is_better, pareto=pareto)
    for ax, spec in zip(flat, panels):
        panel.draw(ax, spec)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.suptitle(f"Rate-distortion: {metric_title(metric, unit)} (mean, 95% bootstrap CI)", fontsize=11)
    fig.tight_layout()
    out = save_figure(fig, out_path)
    plt.close(fig)
    return out


class _Panel:
    """Draws the panels of one metric's R-D figure; remembers whether the ring's legend label was given."""

    def __init__(self, summary_df: Any, metric: str, colors: dict[str, Any], *, unit: str,
                 higher_is_better: bool, pareto: bool) -> None:
        self.summary_df, self.metric, self.colors, self.unit = summary_df, metric, colors, unit
        self.higher_is_better, self.pareto = higher_is_better, pareto

    def label(self, codec: str, key: str | None = None) -> str:
        """The curve's label: the codec with its checkpoint (the summary's ``label`` column) and its mode."""
        s = self.summary_df
        text = display_codec(codec)
        if "label" in s:
            rows = s.loc[s["codec"] == codec, "label"]
            if len(rows):
                text = str(rows.iloc[0])
        mode = curve_mode(key, codec) if key else ""
        return f"{text} ({mode})" if mode else text

    def draw(self, ax: Any, spec: PanelSpec) -> None:
        """One panel: every curve, the frontier behind them, the axes, a legend and the pooling caption."""
        cs = split_curves(spec.rows)
        off_scale = []
        for key in anchor_codecs(cs):
            p = cs.pop(key).points[0]
            off_scale.append(f"{self.label(p.codec, key)}@{p.op}: {p.mean:.3g} at {p.measured_kbps:.0f} kbps")
        rows = spec.rows
        all_points: list[rd.RDPoint] = []
        ringed = False
        for key, cur in cs.items():
            if cur.points:
                ops = {p.op for p in cur.points}
                marked = rows[(rows["codec"] == cur.codec) & rows["op"].isin(ops) & (~rows["same_items"].astype(bool))]
                ringed = self._curve(ax, key, cur, marked, ringed)
                all_points += cur.points
        if self.pareto and len(cs) > 1:
            front = rd.pareto_frontier(all_points, self.higher_is_better)
            if len(front) >= 2:
                ax.plot([p.measured_kbps for p in front], [p.mean for p in front], color="0.6", ls="--",
                        lw=2.5, alpha=0.45, label="Pareto frontier", zorder=1)
        self._axes(ax, spec, all_points, off_scale)

    def _curve(self, ax: Any, key: str, cur: rd.Curve, marked: Any, ringed: bool) -> bool:
        """One curve: line with CI band (or bars), hollow nominal markers, rings on ``marked`` rows."""
        col = self.colors.get(key, "black")
        x, y = cur.rates, cur.qualities
        lo = np.array([p.ci_lo for p in cur.points])
        hi = np.array([p.ci_hi for p in cur.points])
        ax.plot(x, y, "-o", color=col, ms=4, lw=1.6, label=self.label(cur.codec, key), zorder=4)
        band = np.isfinite(lo) & np.isfinite(hi)
        if band.sum() >= 2:
            ax.fill_between(x[band], lo[band], hi[band], color=col, alpha=0.18, lw=0, zorder=2)
        elif band.any():
            ax.errorbar(x[band], y[band], yerr=[y[band] - lo[band], hi[band] - y[band]], fmt="none",
                        ecolor=col, alpha=0.6, capsize=3, zorder=3)
        nominal = np.array([p.nominal_kbps for p in cur.points])
        fin = np.isfinite(nominal) & (nominal > 0)
        ax.scatter(nominal[fin], y[fin], marker="o", facecolors="none", edgecolors=col, s=28,
                   linewidths=0.9, alpha=0.7, zorder=4)
        for xm, xn, yy in zip(x[fin], nominal[fin], y[fin]):
            ax.plot([xn, xm], [yy, yy], color=col, lw=0.6, alpha=0.5, zorder=3)
        for r in marked.itertuples():
            ax.scatter([r.measured_kbps], [r.mean], s=110, facecolors="none", edgecolors="red", linewidths=1.2,
                       zorder=5, label=None if ringed else "different item set")
            ringed = True
        return ringed

    def _axes(self, ax: Any, spec: PanelSpec, points: list[rd.RDPoint], off_scale: list[str]) -> None:
        """Log kbps axis when the rates span more than 4x, title, labels, the pooling caption, grid."""
        rates = [p.measured_kbps for p in points if math.isfinite(p.measured_kbps) and p.measured_kbps > 0]
        if rates and max(rates) / min(rates) > 4:
            _log_kbps_axis(ax, min(rates), max(rates))
        ax.set_title(f"{spec.dataset}: {spec.domain}" if spec.dataset else spec.domain, fontsize=10)
        xlabel = f"measured kbps (hollow: nominal)\npools: {spec.caption}"
        if off_scale:
            xlabel += "\noff scale: " + "; ".join(off_scale)
        ax.set_xlabel(xlabel, fontsize=9)
        arrow = "↑ better" if self.higher_is_better else "↓ better"
        ax.set_ylabel(f"{metric_title(self.metric, self.unit)}  ({arrow})")
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
                     max_freq_hz: float | None = None, floor_db: float = -100.0, width_px: int = 330,
                     height_px: int = 110, log_freq: bool = False, title: str = "") -> Path:
    """A spectrogram figure of about ``width_px`` x ``height_px``: time (s) and frequency (kHz) axes,
    a colour bar in dB re full scale over a fixed range ``floor_db..0`` (so images compare), and
    optionally a log-frequency axis (from 50 Hz). Drawn as one mesh of at most ``width_px`` frames."""
    plt = _pyplot()
    db, freqs, times = spectrogram_db(x, sample_rate_hz)
    keep = freqs <= (max_freq_hz if max_freq_hz is not None else freqs[-1])
    if log_freq:
        keep &= freqs >= 50.0
    db, freqs = db[keep], freqs[keep]
    cols = np.unique(np.linspace(0, db.shape[1] - 1, min(width_px, db.shape[1])).round().astype(int))
    db, times = db[:, cols], times[cols]
    fig, ax = plt.subplots(figsize=(width_px / 100, height_px / 100), dpi=100)
    mesh = ax.pcolormesh(times, freqs / 1000.0, db, shading="nearest", cmap="magma", vmin=floor_db, vmax=0.0,
                         rasterized=True)
    if log_freq:
        ax.set_yscale("log")
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("frequency (kHz)", fontsize=7)
    ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=7)
    bar = fig.colorbar(mesh, ax=ax, pad=0.02)
    bar.set_label("dB re full scale", fontsize=6)
    bar.ax.tick_params(labelsize=6)
    fig.tight_layout(pad=0.3)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
