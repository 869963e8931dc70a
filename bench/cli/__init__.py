"""The ``bench`` command line.

Each subcommand is one module of this package (``bench.cli.run``, ``bench.cli.report``...) exposing
``add_arguments(parser)`` and ``main(args) -> int``: its argument parsing and printing, and nothing
else; the work is done by the library below. Here is the one place that turns a user's mistake
(:class:`bench.errors.UserError`) into one line and exit code 2. Modules are imported only for the
subcommand being run (and to build ``--help``), and keep heavy imports inside functions.

``--plugin MODULE|FILE.py`` (repeatable) is accepted before the subcommand and after it, by
every command: the plugins it names, those of ``$BENCH_PLUGINS`` and the installed entry points
are loaded (``bench.plugins.load_plugins``) before the subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.cli.args import OneLineParser as _Parser
from bench.errors import UserError, one_line
from bench.plugins import load_plugins

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
    "export": ("bench.cli.export", "write a run's reconstructions, bitstreams and references as WAV/.bin files"),
    "weights": ("bench.cli.weights", "fetch, list or convert published codecs' weights (Hugging Face cache)"),
}


#: namespace attributes holding the --plugin values given before / after the subcommand (two
#: attributes: argparse lets a subcommand's defaults overwrite the main parser's values)
_PLUGIN_DESTS = ("_plugins_global", "_plugins")


def _plugin_spec(text: str) -> str:
    """A --plugin value: a module name or a file path (an empty one is a mistake, e.g. an unset variable)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a module name or a .py file, got an empty value")
    return text.strip()


def _add_plugin_option(p: argparse.ArgumentParser, dest: str) -> None:
    p.add_argument("--plugin", action="append", default=[], dest=dest, metavar="MODULE|FILE.py", type=_plugin_spec,
                   help="load codecs/metrics/datasets from this module or .py file (repeatable; "
                        "also $BENCH_PLUGINS and installed 'bench.plugins' entry points)")


def build_parser() -> argparse.ArgumentParser:
    """The ``bench`` parser: global options and one subparser per command (each also takes --plugin)."""
    parser = _Parser(prog="bench", description="Benchmark neural audio codecs honestly.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _add_plugin_option(parser, _PLUGIN_DESTS[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_plugin_option(p, _PLUGIN_DESTS[1])
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


def plugin_specs(args: argparse.Namespace) -> list[str]:
    """The --plugin values of a parsed command line, those before the subcommand first."""
    return [spec for dest in _PLUGIN_DESTS for spec in getattr(args, dest, None) or []]


def main(argv: list[str] | None = None) -> int:
    """Run one ``bench`` command; a user's mistake is one line on stderr and its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from bench import __version__

        print(f"bench {__version__}")
        return 0
    try:
        load_plugins(plugin_specs(args))
    except UserError as exc:
        return _user_error(exc)
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
        return _user_error(exc)
    except KeyboardInterrupt:
        print("\ninterrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130


def _user_error(exc: UserError) -> int:
    print(f"error: {one_line(exc)}", file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
