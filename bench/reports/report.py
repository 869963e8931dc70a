"""Build every table of a report once, then write it as CSV, JSON, markdown (and HTML in html.py)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.reports import plots, set_level, stats, tables
from bench.reports.load import RunData
from bench.reports.provenance import CPU_NOTE, checkpoint_source, demo_banner, is_in_repo

METHODS_TEXT = (
    "Means are over the items each row scored; 95% confidence intervals are percentile bootstraps "
    "({n_boot} resamples) that resample speakers or tracks as clusters where the dataset records them. "
    "BD-rate and BD-quality (Bjontegaard) use monotone piecewise cubic (PCHIP) interpolation over the "
    "range where both curves exist; curves overlapping less than 25% of the narrower one get no number. "
    "Paired comparisons match each operating point to the reference's nearest measured bitrate "
    "(within a factor {ratio:g}), use the Wilcoxon signed-rank test on per-cluster mean differences, "
    "and Holm's correction across all comparisons (alpha {alpha:g}). A comparison with too few clusters "
    "for the test ever to reach p below alpha (the smallest two-sided p of n clusters is 2/2^n) is said so "
    "in words and left out of the correction."
)


FEW_CLUSTERS = 5  # fewer independent units than this: the bootstrap CI is too narrow to trust
FOOTNOTES = ("† mean over a different set of items than most rows of its table (failures or missing items); "
             "compare with care. ‡ CI from fewer than 5 speakers/tracks/items: too few independent units "
             "for a reliable interval.")


@dataclass
class Report:
    """Every table of one report, computed once and written in each format."""

    data: RunData
    reference: str | None
    summary: Any
    bd: Any
    paired: Any
    counts: Any
    efficiency: Any
    n_boot: int
    alpha: float
    plots: dict[str, Path] = field(default_factory=dict)  # metric -> PNG
    time_codecs: Any = None  # where the run's time went (tables.time_codecs / time_metrics / time_totals)
    time_metrics: Any = None
    time_totals: Any = None
    _progress: dict[str, Any] | None = None

    @property
    def methods(self) -> str:
        """The methods paragraph with this report's bootstrap size, match ratio and alpha."""
        return METHODS_TEXT.format(n_boot=self.n_boot, ratio=tables.MATCH_RATIO, alpha=self.alpha)

    def header(self) -> dict[str, Any]:
        """What the top of every format shows: run, datasets, splits, codecs, metrics, reference."""
        d = self.data
        datasets = sorted(set(d.items["dataset"]))
        splits = sorted(set(d.items["split"].dropna())) if "split" in d.items else []
        return {
            "run_dir": str(d.run_dir), "run_id": d.run_id, "datasets": datasets, "splits": splits,
            "n_items": int(len(d.items)), "codecs": d.codecs, "metrics": d.metrics,
            "reference": self.reference, "other_runs_in_file": d.other_runs,
            "metric_directions": {m: d.info(m).better for m in d.metrics},
            "direction_guessed": [m for m in d.metrics if d.info(m).direction_source == "guess"],
            "banner": demo_banner(d), "codec_labels": {c: d.label(c) for c in d.codecs},
            "reference_label": d.label(self.reference) if self.reference else None,
            "progress": self.progress, "partial_run": self.progress["text"],
        }

    @property
    def progress(self) -> dict[str, Any]:
        """How much of the planned run is done (see :func:`bench.reports.tables.progress`), computed once."""
        if self._progress is None:
            self._progress = tables.progress(self.data)
        return self._progress

    def codec_rows(self) -> list[dict[str, str]]:
        """One row per codec: its label and where its checkpoint came from (release and hash, or the card)."""
        d = self.data
        return [{"codec": d.label(c), "checkpoint": checkpoint_source(c, d.codec_info.get(c))} for c in d.codecs]

    def codec_notes(self) -> list[str]:
        """Notes under the codec table: the CPU-trained marker, when an in-repo checkpoint ran."""
        d = self.data
        return [CPU_NOTE] if any(is_in_repo(c, d.codec_info.get(c)) for c in d.codecs) else []


def build(data: RunData, *, reference: str | None = None, n_boot: int = stats.DEFAULT_N_BOOT,
          alpha: float = 0.05, seed: int = 0) -> Report:
    """Compute every table of a report (summary first: BD and paired tests are built on it)."""
    ref = tables.resolve_reference(data, reference)
    summary = tables.summary(data, n_boot=n_boot, seed=seed)
    time_codecs, time_metrics = tables.time_codecs(data), tables.time_metrics(data)
    return Report(
        data=data, reference=ref, summary=summary,
        bd=tables.bd_table(data, summary, ref),
        paired=tables.paired_table(data, summary, ref, alpha=alpha),
        counts=tables.counts_table(data),
        efficiency=tables.efficiency_table(data),
        n_boot=n_boot, alpha=alpha,
        time_codecs=time_codecs, time_metrics=time_metrics,
        time_totals=tables.time_totals(data, time_codecs, time_metrics),
    )


def write_plots(report: Report, out_dir: Path) -> dict[str, Path]:
    """Draw one R-D figure per metric into ``out_dir/plots`` and record them in ``report.plots``."""
    for metric in sorted(set(report.summary["metric"])):
        info = report.data.info(metric)
        path = out_dir / "plots" / f"rd_{plots.safe_name(metric)}.png"
        plots.plot_rd(report.summary, metric, path, unit=info.unit, higher_is_better=info.higher_is_better,
                      data=report.data, n_boot=report.n_boot)
        report.plots[metric] = path
    return report.plots


#: the tables written as ``<name>.csv``
CSV_TABLES = ("summary", "bd", "paired", "counts", "efficiency", "time_codecs", "time_metrics", "time_totals")


def write_csv(report: Report, out_dir: Path) -> list[Path]:
    """Write each table as ``<name>.csv`` (full precision, for other tools)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CSV_TABLES:
        frame = getattr(report, name)
        path = out_dir / f"{name}.csv"
        _with_banners(report, frame).to_csv(path, index=False)
        written.append(path)
    written += set_level.write_csv(report, out_dir)  # set_level.csv, when the run has set-level rows
    return written


def _with_banners(report: Report, frame: Any) -> Any:
    """``frame`` with the demo and partial-run banners as first columns, so the warnings travel with every row."""
    for col, text in (("partial_run", report.progress["text"]), ("banner", demo_banner(report.data))):
        if text:
            frame = frame.copy()
            frame.insert(0, col, text)
    return frame


def write_paper_tables(report: Report, out_dir: Path, *, tex: bool = True, wide: bool = True) -> list[Path]:
    """Write ``wide.csv`` (one row per codec x operating point, mean/ci_low/ci_high/n per metric) and
    ``table.tex`` (booktabs, mean [95% CI] per metric), both from the summary table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if wide:
        path = out_dir / "wide.csv"
        _with_banners(report, tables.wide_table(report.summary)).to_csv(path, index=False)
        written.append(path)
    if tex:
        path = out_dir / "table.tex"
        note = report.progress["text"]
        body = tables.latex_table(report.summary, report.data, note=note)
        path.write_text((f"% {note}\n" if note else "") + body, encoding="utf-8")
        written.append(path)
    return written


def _records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame as JSON-ready records: NaN becomes null, numpy scalars plain numbers."""
    out = []
    for rec in frame.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            elif hasattr(v, "item"):  # numpy scalar
                v = v.item()
            clean[k] = v
        out.append(clean)
    return out


def write_json(report: Report, out_dir: Path) -> Path:
    """Write ``report.json``: the header, methods, every table and the plot paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "bench-report", "version": 1, **report.header(), "methods": report.methods,
        "codec_checkpoints": report.codec_rows(), "codec_notes": report.codec_notes(),
        "summary": _records(report.summary), "bd": _records(report.bd), "paired": _records(report.paired),
        "counts": _records(report.counts), "efficiency": _records(report.efficiency),
        "set_level": set_level.records(report.data),
        "time": {"codecs": _records(report.time_codecs), "metrics": _records(report.time_metrics),
                 "totals": (_records(report.time_totals) or [{}])[0], "overhead_meaning": tables.OVERHEAD_MEANING},
        "plots": {m: str(p.relative_to(out_dir)) if p.is_relative_to(out_dir) else str(p)
                  for m, p in report.plots.items()},
    }
    path = out_dir / "report.json"
    path.write_text(json.dumps(payload, indent=1, default=str))
    return path


def fmt(x: Any, digits: int = 3) -> str:
    """Numbers for tables: about 3 significant digits, a dash for NaN."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(f):
        return "–"
    if f == 0:
        return "0"
    mag = int(math.floor(math.log10(abs(f))))
    if mag >= 4 or mag < -2:
        return f"{f:.{digits}g}"
    return f"{f:.{max(0, digits - 1 - mag)}f}"


def summary_rows(report: Report, dataset: str, domain: str, metric: str) -> list[dict[str, str]]:
    """Display rows of one summary block (shared by markdown and HTML)."""
    s = report.summary
    block = s[(s["dataset"] == dataset) & (s["domain"] == domain) & (s["metric"] == metric)]
    block = block.sort_values(["codec", "nominal_kbps"])
    rows = []
    for r in block.itertuples():
        mark = "" if r.same_items else " †"
        ci = f"[{fmt(r.ci_lo)}, {fmt(r.ci_hi)}]" if math.isfinite(r.ci_lo) else "n/a (<2 clusters)"
        if math.isfinite(r.ci_lo) and r.n_clusters < FEW_CLUSTERS:
            ci += " ‡"
        rows.append({"codec": r.label, "op": str(r.op), "nominal kbps": fmt(r.nominal_kbps),
                     "measured kbps": fmt(r.measured_kbps), "mean": fmt(r.mean) + mark, "95% CI": ci,
                     "items": str(r.n_items), "clusters": str(r.n_clusters), "failed": str(r.n_failed),
                     "n/a": str(r.n_not_applicable)})
    return rows


# Characters with inline meaning in CommonMark/GFM (emphasis, code, links, raw HTML, entities, tables,
# strikethrough, GitHub math) and the backslash itself; a backslash makes each of them literal.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$&])")


def md_escape(text: Any) -> str:
    """``text`` as literal markdown inline text: specials backslash-escaped, line breaks made spaces.

    Every user-controlled string (item ids and file names in reasons, codec keys and checkpoint
    paths, dataset, split, metric and unit names, notes) goes through this before it is written to
    ``report.md``; the HTML page escapes the same strings with ``html.escape``.
    """
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


def md_code(text: Any) -> str:
    """``text`` as a markdown code span, fenced with more backticks than it contains (CommonMark)."""
    body = " ".join(str(text).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def md_link_target(path: Path | str) -> str:
    """A file path as a link destination: percent-encoded, so spaces and parentheses keep the link whole."""
    from urllib.parse import quote

    return quote(Path(path).as_posix(), safe="/:")


def _md_table(rows: list[dict[str, str]]) -> str:
    """A GFM table of display rows; every header and cell goes through :func:`md_escape`."""
    if not rows:
        return "_(none)_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(md_escape(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(md_escape(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def bd_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the BD table (shared by markdown and HTML)."""
    rows = []
    for r in report.bd.itertuples() if len(report.bd) else []:
        rows.append({"dataset": r.dataset, "domain": r.domain, "metric": r.metric, "codec": r.label,
                     "vs": report.data.label(r.reference),
                     "BD-rate %": fmt(r.bd_rate_pct), "BD-quality": fmt(r.bd_quality),
                     "points": f"{r.n_points}/{r.n_points_ref}", "note": r.note})
    return rows


def paired_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the paired comparisons (shared by markdown and HTML)."""
    rows = []
    for r in report.paired.itertuples() if len(report.paired) else []:
        rows.append({"metric": r.metric, "codec": f"{r.label}@{r.op}", "kbps": fmt(r.kbps),
                     "vs": f"{report.data.label(r.reference)}@{r.ref_op}", "ref kbps": fmt(r.ref_kbps),
                     "items": str(r.n_items), "clusters": str(r.n_clusters), "mean diff": fmt(r.mean_diff),
                     "p": fmt(r.p_value) if r.min_p < report.alpha else "n/a", "p (Holm)": fmt(r.p_holm),
                     "better is": "higher" if r.higher_is_better else "lower", "verdict": r.verdict})
    return rows


def counts_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the counts table, failure and not-applicable reasons joined (shared by markdown and HTML)."""
    rows = []
    for r in report.counts.itertuples() if len(report.counts) else []:
        rows.append({"metric": r.metric, "codec": f"{r.label}@{r.op}", "scored": str(r.scored),
                     "failed": str(r.failed), "not applicable": str(r.not_applicable),
                     "missing": str(r.missing), "reasons": "; ".join(x for x in (r.failure_reasons, r.not_applicable_reasons) if x)})
    return rows


def efficiency_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the efficiency table (shared by markdown and HTML)."""
    rows = []
    for r in report.efficiency.itertuples() if len(report.efficiency) else []:
        params = "" if r.parameters is None or (isinstance(r.parameters, float) and not math.isfinite(r.parameters)) else f"{int(r.parameters):,}"
        rows.append({"codec": f"{r.label}@{r.op}", "parameters": params, "device": str(r.device or ""),
                     "peak memory MB": fmt(r.peak_memory_mb), "encode RTF": fmt(r.encode_rtf),
                     "decode RTF": fmt(r.decode_rtf), "audio s": fmt(r.audio_s), "checkpoint": r.checkpoint_hash,
                     "memory measured as": memory_note_mark(report, r.memory_kind)})
    return rows


def memory_notes(report: Report) -> list[str]:
    """The distinct ways the efficiency table's peak memory figures were measured, in order of appearance."""
    frame = report.efficiency
    kinds = [str(k) for k in frame["memory_kind"]] if len(frame) and "memory_kind" in frame else []
    return list(dict.fromkeys(kinds))


def memory_note_mark(report: Report, kind: Any) -> str:
    """The footnote number ``[k]`` of ``kind`` under the efficiency table."""
    notes = memory_notes(report)
    return f"[{notes.index(str(kind)) + 1}]" if str(kind) in notes else ""


def memory_note_lines(report: Report) -> list[str]:
    """``[k] how it was measured`` lines, printed under the efficiency table in every format."""
    return [f"[{k}] peak memory: {kind}" for k, kind in enumerate(memory_notes(report), 1)]


NOT_RECORDED = "not recorded"


def _seconds(x: Any) -> str:
    """Seconds for the time tables; "not recorded" where the run did not measure them (never 0)."""
    return NOT_RECORDED if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt(x)


def time_codec_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the per-codec time table (shared by markdown and HTML)."""
    rows = []
    frame = report.time_codecs
    for r in frame.itertuples() if frame is not None and len(frame) else []:
        rows.append({"codec": f"{r.label}@{r.op}", "items": str(r.items), "audio s": _seconds(r.audio_s),
                     "encode s": _seconds(r.encode_s), "decode s": _seconds(r.decode_s),
                     "encode s per audio s": _seconds(r.encode_rtf), "decode s per audio s": _seconds(r.decode_rtf),
                     "attribution": r.timing or ""})
    return rows


def time_metric_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the per-metric time table (shared by markdown and HTML)."""
    rows = []
    frame = report.time_metrics
    for r in frame.itertuples() if frame is not None and len(frame) else []:
        rows.append({"metric": r.metric, "compute s": _seconds(r.compute_s),
                     "s per audio s": _seconds(r.s_per_audio_s), "rows timed": f"{r.rows_timed}/{r.rows}"})
    return rows


def _present(x: Any) -> bool:
    """False for a value the run did not record (None, NaN, empty text)."""
    return not (x is None or x == "" or (isinstance(x, float) and not math.isfinite(x)))


def time_total_rows(report: Report) -> list[dict[str, str]]:
    """Display rows of the run's time totals, one quantity a row (shared by markdown and HTML)."""
    frame = report.time_totals
    if frame is None or not len(frame):
        return []
    t = frame.iloc[0]
    engine = " / ".join(str(x) for x in (t["engine"], t["workers"]) if _present(x))
    rows = [("codec compute (encode + decode) s", _seconds(t["codec_compute_s"])),
            ("metric compute s", _seconds(t["metric_compute_s"])), ("wall time s", _seconds(t["wall_s"])),
            ("cores", str(int(t["cores"])) if _present(t["cores"]) else NOT_RECORDED),
            ("engine / workers", engine or NOT_RECORDED), ("overhead ratio", _seconds(t["overhead_ratio"]))]
    out = [{"quantity": q, "value": v} for q, v in rows]
    if t["note"]:
        out.append({"quantity": "note", "value": str(t["note"])})
    return out


TIME_TEXT = ("Compute seconds as the run measured them: encode and decode per coded item (batched work "
             "split over its items as the attribution says), each metric call per result row (a batch's "
             "time over its size). A run made before a time was recorded says so ('not recorded', never 0).")


def _md_time_section(report: Report) -> list[str]:
    """The "where the run's time went" part of the efficiency section of ``report.md``."""
    return ["### Where the run's time went", "", TIME_TEXT, "", "#### Codecs", "",
            _md_table(time_codec_rows(report)), "#### Metrics", "", _md_table(time_metric_rows(report)),
            "#### Totals", "", _md_table(time_total_rows(report)), tables.OVERHEAD_MEANING, ""]


def _md_header(h: dict[str, Any]) -> list[str]:
    """Title and run line of ``report.md`` (user strings escaped)."""
    codecs = ", ".join(md_escape(h["codec_labels"][c]) for c in h["codecs"])
    reference = md_escape(h["reference_label"]) if h["reference"] else "none"
    lines = [f"> **{md_escape(h['partial_run'])}**", ""] if h["partial_run"] else []
    lines += [f"> **{md_escape(h['banner'])}**", ""] if h["banner"] else []
    lines += [f"# Codec benchmark report: {md_escape(', '.join(h['datasets'])) if h['datasets'] else 'run'}", "",
             (f"Run {md_code(h['run_id'])} in {md_code(h['run_dir'])}: {h['n_items']} items, codecs {codecs}; "
              f"reference for BD and paired tests: {reference}."), ""]
    if h["direction_guessed"]:
        guessed = ", ".join(md_escape(m) for m in h["direction_guessed"])
        lines += [f"Direction (higher/lower is better) guessed from the name for: {guessed}.", ""]
    return lines


def metric_heading(info: Any) -> str:
    """``name — display name`` for headings (``wer — WER (PocketSphinx, offline fallback)``), else the name."""
    return f"{info.name} — {info.display}" if info.display and info.display != info.name else info.name


def metric_rows(report: Report) -> list[dict[str, str]]:
    """Every metric of the run with its name for tables, unit, direction and model (weights hash) if any."""
    data = report.data
    rows = []
    for metric in data.metrics:
        info = data.info(metric)
        rows.append({"metric": metric, "name": info.display or metric, "unit": info.unit or "",
                     "better": info.better, "model and weights": info.model or "none (signal metric)"})
    return rows


def _md_metric_section(report: Report, metric: str, out_dir: Path) -> list[str]:
    """One metric's heading, R-D plot and summary tables per (dataset, domain)."""
    info = report.data.info(metric)
    unit = f", {md_escape(info.unit)}" if info.unit else ""
    lines = [f"## {md_escape(metric_heading(info))} ({info.better} is better{unit})", ""]
    if info.model:
        lines += [f"Model: {md_escape(info.model)}.", ""]
    if metric in report.plots:
        plot = report.plots[metric]
        rel = plot.relative_to(out_dir) if plot.is_relative_to(out_dir) else plot
        lines += [f"![R-D {md_escape(metric)}]({md_link_target(rel)})", ""]
    s = report.summary[report.summary["metric"] == metric]
    for dataset, domain in s[["dataset", "domain"]].drop_duplicates().itertuples(index=False):
        lines += [f"### {md_escape(dataset or 'dataset')} / {md_escape(domain)}", "",
                  _md_table(summary_rows(report, dataset, domain, metric))]
    return lines


def write_markdown(report: Report, out_dir: Path) -> Path:
    """Write ``report.md``: per-metric summaries with plots, BD, paired tests, counts, efficiency, methods."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = _md_header(report.header())
    for metric in sorted(set(report.summary["metric"])):
        lines += _md_metric_section(report, metric, out_dir)
    lines += [FOOTNOTES, ""]
    lines += set_level.markdown_section(report.data)
    lines += ["## BD-rate and BD-quality", "", ("Negative BD-rate: fewer bits for the same quality. "
              "BD-quality is the mean metric difference at equal rate (metric units)."), "", _md_table(bd_rows(report))]
    lines += ["## Paired comparisons at matched operating points", "", _md_table(paired_rows(report))]
    lines += ["## Counts", "", _md_table(counts_rows(report))]
    lines += ["## Efficiency", "", "RTF = processing seconds / audio seconds on the run's device (below 1 is faster than real time).",
              "", _md_table(efficiency_rows(report)), "", *[f"{md_escape(n)}  " for n in memory_note_lines(report)]]
    lines += _md_time_section(report)
    lines += ["## Codecs and checkpoints", "", _md_table(report.codec_rows()), *report.codec_notes(), ""]
    lines += ["## Metrics and models", "", _md_table(metric_rows(report)), ""]
    lines += ["## Methods", "", report.methods, ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
