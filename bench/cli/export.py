"""``bench export RUN_DIR --audio DIR [--run-id ID] [--cache DIR]``.

Writes every reconstruction of a run as WAV with its bitstream beside it
(``DIR/<codec>/<op>/<item>.wav`` and ``.bin``) and each prepared reference once
(``DIR/reference/<item>.wav``), read from the run's reconstruction cache without changing it
(``bench.export``). Prints one summary line, with what was skipped and why.
"""

from __future__ import annotations

import argparse

from bench.cli.args import existing_dir, writable_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench export``, each checked while parsing."""
    p.add_argument("run_dir", help="run directory written by 'bench run' (holds results.sqlite)")
    p.add_argument("--audio", required=True, type=writable_dir, metavar="DIR",
                   help="folder to write DIR/<codec>/<op>/<item>.wav (+ .bin) and DIR/reference/<item>.wav into")
    p.add_argument("--run-id", default=None, help="which run of the file (default: the latest)")
    p.add_argument("--cache", default=None, type=existing_dir, metavar="DIR",
                   help="reconstruction cache to read (default: the one the run's manifest names)")


def main(args: argparse.Namespace) -> int:
    """``bench export``: write the files and print the summary line."""
    from bench.export import export_run

    summary = export_run(args.run_dir, args.audio, run_id=args.run_id, cache_dir=args.cache)
    print(summary.line())
    return 0
