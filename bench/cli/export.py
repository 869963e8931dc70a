"""``bench export RUN_DIR (--out FILE [--format csv|jsonl|parquet] | --audio DIR) [--run-id ID] [--cache DIR]``.

``--out FILE`` writes the run's per-item rows, one per (item, codec, operating point, metric), with
values, statuses, rates, timings, item metadata and codec provenance, as CSV, JSON Lines or Parquet
(``bench.export.export_rows``; the format comes from ``--format`` or the file's name; ``-`` writes CSV
or JSON Lines to stdout). Not-applicable metrics are rows with status ``skipped`` unless ``--no-skipped``.
Parquet needs pyarrow (``pip install 'bench[parquet]'``).

``--audio DIR`` writes every reconstruction of a run as WAV with its bitstream beside it
(``DIR/<codec>/<op>/<item>.wav`` and ``.bin``) and each prepared reference once
(``DIR/reference/<item>.wav``), read from the run's reconstruction cache without changing it
(``bench.export.export_run``).

Give one of them or both; the run is only read. Each prints one summary line (to stderr when the
rows go to stdout), with what was skipped and why. Formats: docs/formats.md.
"""

from __future__ import annotations

import argparse
import sys

from bench.cli.args import existing_dir, writable_dir, writable_file
from bench.errors import UserError

#: the row formats (bench.export.ROW_FORMATS; listed here so ``bench --help`` imports no numpy)
ROW_FORMATS = ("csv", "jsonl", "parquet")


def rows_out(text: str) -> str:
    """``-`` (stdout) or a file path that may be created or overwritten."""
    return text if text == "-" else writable_file(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench export``, each checked while parsing."""
    p.add_argument("run_dir", help="run directory written by 'bench run' (holds results.sqlite), or the .sqlite file")
    rows = p.add_argument_group("per-item rows (--out)")
    rows.add_argument("--out", default=None, type=rows_out, metavar="FILE",
                      help="write one row per item, codec, operating point and metric to FILE ('-': stdout, "
                           "csv or jsonl only); never the run's own results.sqlite")
    rows.add_argument("--format", default=None, choices=ROW_FORMATS,
                      help="row file format (default: from FILE's name: .csv, .jsonl, .parquet); parquet "
                           "needs pyarrow: pip install 'bench[parquet]'")
    rows.add_argument("--no-skipped", action="store_true",
                      help="leave out the not-applicable rows (by default they are rows with status 'skipped' "
                           "and the reason in 'error')")
    audio = p.add_argument_group("reconstructions as files (--audio)")
    audio.add_argument("--audio", default=None, type=writable_dir, metavar="DIR",
                       help="folder to write DIR/<codec>/<op>/<item>.wav (+ .bin) and DIR/reference/<item>.wav into")
    audio.add_argument("--cache", default=None, type=existing_dir, metavar="DIR",
                       help="reconstruction cache to read (default: the one the run's manifest names)")
    p.add_argument("--run-id", default=None, help="which run of the file (default: the latest)")


def _check(args: argparse.Namespace) -> None:
    """UserError when neither output is asked for, or an option belongs to the one not asked for."""
    if args.out is None and args.audio is None:
        raise UserError("give --out FILE (the per-item rows; --format csv|jsonl|parquet) or --audio DIR "
                        "(reconstructions, bitstreams and references as files), or both")
    if args.out is None and (args.format is not None or args.no_skipped):
        raise UserError(f"{'--format' if args.format is not None else '--no-skipped'} applies to the rows: "
                        "give --out FILE (or '-' for stdout)")
    if args.audio is None and args.cache is not None:
        raise UserError("--cache applies to --audio DIR")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit does not fail again on the closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (an embedding program's stream)
        pass


def main(args: argparse.Namespace) -> int:
    """``bench export``: write the rows and/or the files and print one summary line for each."""
    _check(args)
    say = sys.stderr if args.out == "-" else sys.stdout
    if args.out is not None:
        from bench.export import export_rows

        try:
            summary = export_rows(args.run_dir, args.out, args.format, run_id=args.run_id,
                                  include_skipped=not args.no_skipped)
        except BrokenPipeError:  # `bench export RUN --out - | head`: the reader has what it wanted
            _silence_stdout()
            return 0
        print(summary.line(), file=say)
    if args.audio is not None:
        from bench.export import export_run

        print(export_run(args.run_dir, args.audio, run_id=args.run_id, cache_dir=args.cache).line(), file=say)
    return 0
