"""``bench baseline save RUN_DIR --out baseline.json`` and ``bench gate --baseline B --candidate C``.

Argument parsing and printing of the checkpoint gate; the work is :mod:`bench.gate`'s. Every
option is checked while parsing (ranges, margin syntax, paths), and output paths that would
overwrite an input are refused before anything runs. ``bench gate`` writes its verdict even when
it could not decide, so CI can post why; exit codes: 0 pass, 1 regression, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.cli import args as argtypes
from bench.errors import UserError, one_line
from bench.gate import (
    BOOTSTRAP,
    CONFIDENCE,
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_KBPS_TOLERANCE,
    DEFAULT_MARGIN,
    EXIT_ERROR,
    EXIT_PASS,
    KBPS_TOLERANCE,
    MAX_BOOTSTRAP,
    SEED,
    GateError,
    error_verdict,
    gate,
    make_baseline,
    margin_tokens,
    write_outputs,
)


def name_list(text: str) -> list[str]:
    """argparse type: comma-separated names (``si_sdr,pesq_wb``); empty entries are dropped, one is needed."""
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def margin_arg(text: str) -> str:
    """argparse type of ``--margin``: the text itself, once its syntax is known to be sound."""
    try:
        margin_tokens(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _distinct_paths(reads: dict[str, str | None], writes: dict[str, str | None]) -> None:
    """Refuse an output path that is an input or another output (it would be overwritten)."""
    seen = {Path(p).resolve(): opt for opt, p in reads.items() if p}
    for opt, p in writes.items():
        if not p:
            continue
        other = seen.get(Path(p).resolve())
        if other:
            raise GateError(f"{opt} {p} is also {other}; it would be overwritten")
        seen[Path(p).resolve()] = opt


# --- bench baseline -----------------------------------------------------------------------------

def add_baseline_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bench baseline save``: the run to read, the baseline file to write, what to keep."""
    p.add_argument("action", choices=["save"], help="'save': write a baseline from a run")
    p.add_argument("run_dir", help="run directory written by 'bench run'")
    p.add_argument("--out", required=True, type=argtypes.writable_file,
                   help="baseline JSON to write (commit it next to your CI config)")
    p.add_argument("--metrics", type=name_list, default=None,
                   help="comma-separated metrics to keep (default: all of the run)")
    p.add_argument("--codecs", type=name_list, default=None,
                   help="comma-separated codec keys to keep (default: all of the run)")
    p.add_argument("--run-id", default=None, help="which run of the file (default: the latest)")


def baseline_main(args: argparse.Namespace) -> int:
    """``bench baseline save``: read the run (read-only) and write its baseline document."""
    from bench.reports.load import resolve_db

    _distinct_paths({"the run's database": str(resolve_db(args.run_dir))}, {"--out": args.out})
    doc = make_baseline(args.run_dir, run_id=args.run_id, metrics=args.metrics, codecs=args.codecs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
    n_pts = len(doc["entries"])
    print(f"baseline: {out} ({len(doc['items'])} items, {n_pts} codec operating points, metrics {', '.join(doc['metrics'])})")
    return EXIT_PASS


# --- bench gate ---------------------------------------------------------------------------------

def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bench gate``: baseline, candidate, the decision's parameters, outputs, and how to run a checkpoint."""
    p.add_argument("--baseline", required=True, help="baseline JSON from 'bench baseline save'")
    p.add_argument("--candidate", required=True,
                   help="a checkpoint (run on the baseline's items) or a run directory to compare")
    p.add_argument("--codec", default=None,
                   help="codec family the checkpoint belongs to (default: the baseline's only checkpoint codec)")
    p.add_argument("--metrics", type=name_list, default=None,
                   help="comma-separated metrics to gate on (default: all of the baseline)")
    p.add_argument("--margin", type=margin_arg, default=None,
                   help=f"allowed degradation: '0.1' (metric units), '1%%' (of the baseline mean), or "
                        f"'si_sdr=0.5,pesq_wb=2%%' per metric (default {DEFAULT_MARGIN.replace('%', '%%')})")
    p.add_argument("--confidence", type=argtypes.range_arg(CONFIDENCE), default=DEFAULT_CONFIDENCE,
                   help="one-sided confidence, in (0.5, 1) (default 0.95)")
    p.add_argument("--strict", action="store_true", help="count inconclusive checks as regressions")
    p.add_argument("--kbps-tolerance", type=argtypes.range_arg(KBPS_TOLERANCE), default=DEFAULT_KBPS_TOLERANCE,
                   help="allowed relative increase of measured kbps, >= 0 (default 0.05)")
    p.add_argument("--out", type=argtypes.writable_dir, default=None,
                   help="run directory for a checkpoint candidate (default runs/gate-NAME)")
    p.add_argument("--json", type=argtypes.writable_file, default=None, help="write the JSON verdict here")
    p.add_argument("--markdown", type=argtypes.writable_file, default=None, help="write the markdown summary here")
    p.add_argument("--bootstrap", type=argtypes.range_arg(BOOTSTRAP), default=DEFAULT_BOOTSTRAP,
                   help=f"bootstrap resamples, 1 .. {MAX_BOOTSTRAP} (default 2000)")
    p.add_argument("--seed", type=argtypes.range_arg(SEED), default=0,
                   help="seed of the bootstrap behind the confidence bounds (default 0)")
    p.add_argument("--cache-dir", type=argtypes.writable_dir, default=None,
                   help="reconstruction cache for a checkpoint run")
    p.add_argument("--device", type=argtypes.torch_device, default=None,
                   help="torch device for a checkpoint run: cpu, cuda, cuda:1 (default: the baseline's)")


def gate_main(args: argparse.Namespace) -> int:
    """``bench gate``: the verdict on stdout (and in --json/--markdown); exit 0, 1 or 2."""
    _distinct_paths({"--baseline": args.baseline, "--candidate": args.candidate},
                    {"--json": args.json, "--markdown": args.markdown})
    overrides = {k: v for k, v in (("cache_dir", args.cache_dir), ("device", args.device)) if v}
    try:
        verdict = gate(args.baseline, args.candidate, codec=args.codec, metrics=args.metrics,
                       margin=args.margin, confidence=args.confidence, strict=args.strict,
                       kbps_tolerance=args.kbps_tolerance, out_dir=args.out, n_boot=args.bootstrap,
                       seed=args.seed, config_overrides=overrides)
    except UserError as exc:  # still write the (error) verdict, so CI can post it
        verdict = error_verdict(one_line(exc))
    print(write_outputs(verdict, args.json, args.markdown))
    if verdict["exit_code"] == EXIT_ERROR:  # a failed gate run or an undecidable comparison: say why, once
        print(f"error: {one_line(verdict.get('error') or verdict['reason'])}", file=sys.stderr)
    return int(verdict["exit_code"])
