"""The ``bench`` command line.

Each subcommand is one module of this package (``bench.cli.run``, ``bench.cli.report``...) exposing
``add_arguments(parser)`` and ``main(args) -> int``: its argument parsing and printing, and nothing
else; the work is done by the library below. Here is the one place that turns a user's mistake
(:class:`bench.errors.UserError`) into one line and exit code 2. Modules are imported only for the
subcommand being run (and to build ``--help``), and keep heavy imports inside functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.cli.args import OneLineParser as _Parser
from bench.errors import UserError, one_line

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bench.cli.run", "encode/decode a dataset with codecs and score it (resumable)"),
    "report": ("bench.cli.report", "write tables, R-D plots and an HTML report for a run"),
    "ls": ("bench.cli.ls", "list registered codecs, metrics or datasets"),
    "score": ("bench.cli.score", "score reference/degraded files made elsewhere"),
    "data": ("bench.cli.data", "list, download and verify datasets"),
    "train": ("bench.cli.train", "train an in-repo codec (dac, vrvq, eulerodec)"),
    "baseline": ("bench.cli.gate", "save a baseline for the checkpoint gate"),
    "gate": ("bench.cli.gate", "gate a candidate checkpoint or run against a baseline"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark neural audio codecs honestly.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("bench"):
                p.set_defaults(_missing=f"'bench {name}' is not available in this build ({exc.name} missing)")
                continue
            raise
        adder = getattr(mod, f"add_{name}_arguments", None) or getattr(mod, "add_arguments")
        adder(p)
        p.set_defaults(_module=module, _command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from bench import __version__

        print(f"bench {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"error: {args._missing}", file=sys.stderr)
        return 2
    mod = importlib.import_module(args._module)
    runner = getattr(mod, f"{args._command}_main", None) or getattr(mod, "main")
    try:
        return int(runner(args) or 0)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
