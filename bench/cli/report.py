"""``bench report RUN_DIR [--reference CODEC] [--format html,md,csv,json] [--out DIR]``.

Writes R-D plots (one PNG per metric) and, per ``--format``: ``summary.csv`` and friends,
``report.md``, ``report.json`` and a standalone ``index.html`` with listening examples.
Default output folder: ``RUN_DIR/report``. Each stage (loading, statistics, plots, tables, HTML)
is announced on stderr as it starts, with the seconds so far; ``--no-progress`` silences them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from bench.cli.args import (
    existing_path,
    float_range,
    int_range,
    non_negative_int,
    writable_dir,
)
from bench.reports.make import FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench report``, each checked while parsing."""
    p.add_argument("run_dir", type=existing_path, help="run directory written by 'bench run' (holds results.sqlite)")
    p.add_argument("--reference", default=None,
                   help="codec to compare against for BD-rate and paired tests (default: opus if present)")
    p.add_argument("--format", default="html,md,csv,json", type=parse_formats,
                   help=f"comma-separated outputs among {', '.join(FORMATS)} (default: all)")
    p.add_argument("--out", default=None, type=writable_dir, help="output folder (default: RUN_DIR/report)")
    p.add_argument("--run-id", default=None, help="which run of the file (default: the latest)")
    p.add_argument("--bootstrap", type=int_range(100, 1_000_000), default=2000, help="bootstrap resamples for CIs (default 2000)")
    p.add_argument("--alpha", type=float_range(0.0, 0.5, lo_open=True), default=0.05, help="family-wise error rate of paired tests (default 0.05)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--listen-kbps", type=float_range(0.0, lo_open=True), default=None,
                   help="bitrate for listening examples (default: the rate most codecs are closest to)")
    p.add_argument("--excerpt-s", type=float_range(0.1, 600.0), default=5.0, help="length of listening excerpts (default 5 s)")
    p.add_argument("--no-audio", action="store_true", help="skip listening examples in the HTML report")
    p.add_argument("--single-file", action="store_true",
                   help="also write report.html: the HTML page with every plot and clip embedded, one file to share "
                        "(index.html links the plots/ and audio/ folders beside it)")
    p.add_argument("--no-progress", action="store_true",
                   help="print no stage lines on stderr (loading, statistics, plots, tables...); the summary line stays")


def parse_formats(text: str) -> list[str]:
    """``--format``: comma-separated output kinds among FORMATS (aliases markdown, htm)."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    aliases = {"markdown": "md", "htm": "html"}
    formats = [aliases.get(f, f) for f in formats]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(FORMATS)}")
    return formats


def _stages(args: argparse.Namespace, formats: list[str], say: Callable[[str], None]) -> dict[str, Path]:
    """Write the report stage by stage, saying each stage as it starts (loading: once it is loaded and checked,
    so that a mistake in the command stays the one line on stderr).

    The same steps, in the same order and with the same options, as ``bench.reports.make.make_report``
    (the programmatic entry point), which gives no progress of its own.
    """
    from bench.deps import require

    require(["pandas", "matplotlib"], "bench report")
    from bench.reports import html as html_mod
    from bench.reports import report as rep
    from bench.reports import tables
    from bench.reports.load import load_run

    t0 = time.perf_counter()

    def stage(text: str) -> None:
        say(f"report: {text} [{time.perf_counter() - t0:.1f} s]")

    data = load_run(args.run_dir, args.run_id)
    tables.resolve_reference(data, args.reference)  # a mistake here is the one line on stderr, before any stage's
    out = Path(args.out) if args.out else data.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    stage(f"loaded {data.run_dir} (run {data.run_id}: {len(data.results)} result rows) -> {out}")
    stage(f"statistics ({args.bootstrap} bootstrap resamples, BD-rate, paired tests)")
    report = rep.build(data, reference=args.reference, n_boot=args.bootstrap, alpha=args.alpha, seed=args.seed)
    stage("R-D plots")
    written = {f"plot:{metric}": path for metric, path in rep.write_plots(report, out).items()}
    if "csv" in formats:
        stage("CSV tables")
        written.update({f"csv:{path.stem}": path for path in rep.write_csv(report, out)})
    stage("paper tables (LaTeX, wide CSV)")
    written.update({f"paper:{path.name}": path for path in rep.write_paper_tables(report, out)})
    if "json" in formats:
        stage("JSON")
        written["json"] = rep.write_json(report, out)
    if "md" in formats:
        stage("markdown")
        written["md"] = rep.write_markdown(report, out)
    if "html" in formats:
        stage("HTML" + ("" if args.no_audio else " with listening examples"))
        source = None if args.no_audio else html_mod.default_audio_source(data)
        written["html"] = html_mod.write_html(report, out, audio_source=source, excerpt_s=args.excerpt_s,
                                              target_kbps=args.listen_kbps,
                                              single_file=getattr(args, "single_file", False))
    stage("done")
    return written


def _quiet(message: str) -> None:
    """A stage printer that prints nothing (--no-progress)."""


def _stderr(message: str) -> None:
    """Print one stage line on stderr."""
    print(message, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    """``bench report``: write the report (its stages on stderr unless --no-progress) and print where it went."""
    formats = parse_formats(args.format) if isinstance(args.format, str) else args.format
    written = _stages(args, formats, _quiet if getattr(args, "no_progress", False) else _stderr)
    folder = next(iter(written.values())).parent if written else Path(".")
    main_file = written.get("html") or written.get("md") or folder
    n_plots = sum(1 for k in written if k.startswith("plot:"))
    print(f"report: {main_file} ({n_plots} R-D plot(s); {', '.join(k for k in written if not k.startswith('plot:'))})")
    return 0
