"""``bench report RUN_DIR [--reference CODEC] [--format html,md,csv,json] [--out DIR]``.

Writes R-D plots (one PNG per metric) and, per ``--format``: ``summary.csv`` and friends,
``report.md``, ``report.json`` and a standalone ``index.html`` with listening examples.
Default output folder: ``RUN_DIR/report``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.args import (
    existing_path,
    float_range,
    int_range,
    non_negative_int,
    writable_dir,
)
from bench.reports.make import FORMATS, make_report


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


def parse_formats(text: str) -> list[str]:
    """``--format``: comma-separated output kinds among FORMATS (aliases markdown, htm)."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    aliases = {"markdown": "md", "htm": "html"}
    formats = [aliases.get(f, f) for f in formats]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(FORMATS)}")
    return formats


def main(args: argparse.Namespace) -> int:
    """``bench report``: write the report and print where it went."""
    formats = parse_formats(args.format) if isinstance(args.format, str) else args.format
    written = make_report(args.run_dir, args.out, reference=args.reference, formats=formats,
                          run_id=args.run_id, n_boot=args.bootstrap, alpha=args.alpha, seed=args.seed,
                          with_audio=not args.no_audio, listen_kbps=args.listen_kbps, excerpt_s=args.excerpt_s)
    folder = next(iter(written.values())).parent if written else Path(".")
    main_file = written.get("html") or written.get("md") or folder
    n_plots = sum(1 for k in written if k.startswith("plot:"))
    print(f"report: {main_file} ({n_plots} R-D plot(s); {', '.join(k for k in written if not k.startswith('plot:'))})")
    return 0
