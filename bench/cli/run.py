"""``bench run``: parse and check the options (or a sweep file), print the plan, run (or resume), print the summary.

``--config sweep.toml`` takes codecs, datasets, metrics and settings from a TOML file
(``bench.sweep``); each option given on the command line overrides the file's value, and each
run's manifest records the file (path, sha256, text). The file's values are checked by the same
parsers as the options (:data:`RUN_OPTIONS`). Several datasets or splits in the file are several
runs, one after the other, each with its own run directory ``OUT/DATASET-SPLIT``.

Before any work starts the plan is printed to stderr (also with ``--no-progress``): items, codec
points, metrics, pairs and values, and how many of them a resumed run already has.

Exit codes: 0 done; 2 a mistake in the command or the file (one line); 3 nothing could be scored
(with several runs: in at least one of them; the others still ran).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from bench.cli.args import (
    ArgType,
    existing_file,
    key_value,
    non_negative_int,
    optional_lufs,
    positive_int,
    ray_address,
    torch_device,
    writable_dir,
)
from bench.errors import EXIT_NOTHING_SCORED, UserError
from bench.metrics import DEFAULT_METRICS
from bench.types import RunConfig

if TYPE_CHECKING:
    from bench.pipeline.run import _Plan
    from bench.sweep import Setting, Sweep

#: namespace attribute listing the options given on the command line (they override a sweep file)
GIVEN = "_given_options"


def _note_given(namespace: argparse.Namespace, dest: str) -> None:
    """Record that option ``dest`` was given on the command line."""
    setattr(namespace, GIVEN, frozenset({*getattr(namespace, GIVEN, ()), dest}))


def given_options(args: argparse.Namespace) -> frozenset[str]:
    """The options (their dests) given on the command line of a parsed ``bench run``."""
    given: frozenset[str] = getattr(args, GIVEN, frozenset())
    return given


class _Store(argparse.Action):
    """argparse's ``store``, noting the option as given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        """Store the (already type-checked) value."""
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


class _Flag(argparse.Action):
    """argparse's ``store_true``, noting the option as given."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        """A flag takes no value; its default is False."""
        kwargs.update(nargs=0, default=False)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        """Set the flag."""
        setattr(namespace, self.dest, True)
        _note_given(namespace, self.dest)


class _Append(argparse.Action):
    """argparse's ``append`` (a fresh list, never the default's), noting the option as given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        """Add one value."""
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        _note_given(namespace, self.dest)


@dataclass(frozen=True)
class RunOption:
    """One option of ``bench run``: its flag and help, the check of its text, and its TOML types in a sweep file."""

    flag: str
    help: str
    check: ArgType | None = None  # the argparse type: parses the text or raises ArgumentTypeError
    choices: tuple[str, ...] | None = None
    default: Any = None
    action: type[argparse.Action] = _Store
    toml: tuple[type, ...] = (str,)
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The namespace attribute, which is also its key in a sweep file's [run] table."""
        return self.flag.removeprefix("--").replace("-", "_")

    def parse(self, text: str) -> Any:
        """The checked value of the option's text, as argparse checks it; ValueError with the reason."""
        try:
            value = self.check(text) if self.check is not None else text
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"invalid choice {value!r} (choose from {', '.join(self.choices)})")
        return value


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("--codecs", "'all', names, globs, NAME@OP, NAME:CHECKPOINT[@OP]; comma separated", default="all",
              toml=(str, list)),
    RunOption("--dataset", "dataset name (default: demo; with --split only, the dataset owning it)"),
    RunOption("--split", "dataset split, e.g. test-other (LibriTTS)"),
    RunOption("--root", "dataset root directory (else $BENCH_DATA_ROOT or the config file)"),
    RunOption("--dataset-opt", "dataset option (repeatable)", check=key_value, default=[], action=_Append,
              toml=(dict,), metavar="KEY=VALUE"),
    RunOption("--metrics", f"comma list, 'all' or 'default' ({','.join(DEFAULT_METRICS)})", toml=(str, list)),
    RunOption("--limit", "seeded random subset of N items", check=positive_int, toml=(int,)),
    RunOption("--seed", "seed of the --limit subset (default 0)", check=non_negative_int, default=0, toml=(int,)),
    RunOption("--items", "file with one item id per line to restrict the run to", check=existing_file),
    RunOption("--out", "run directory (default runs/DATASET-SPLIT; with several runs from --config, the folder "
              "holding one OUT/DATASET-SPLIT per run)", check=writable_dir),
    RunOption("--cache-dir", "reconstruction cache (default $BENCH_CACHE_DIR/recon or ~/.cache/bench/recon)",
              check=writable_dir),
    RunOption("--refresh", "recode and rescore everything: ignore cached reconstructions and finished rows",
              action=_Flag, default=False, toml=(bool,)),
    RunOption("--workers", "metric worker processes (default: one per core)", check=positive_int, toml=(int,)),
    RunOption("--device", "torch device for neural codecs and device metrics: auto (CUDA when present, else cpu), "
              "cpu, cuda, cuda:1", check=torch_device, default="auto"),
    RunOption("--engine", "where codec work and scoring run: this machine (local) or a Ray cluster (ray; the [ray] "
              "extra, see docs/scaling.md)", choices=("local", "ray"), default="local"),
    RunOption("--address", "with --engine ray: the cluster to join, 'auto' or HOST:PORT (default: start a local one)",
              check=ray_address),
    RunOption("--channels", "channel policy (default mono mixdown)", choices=("mono", "first", "keep"), default="mono"),
    RunOption("--loudness", "normalise items to this LUFS before coding (-70..0, e.g. -16); default off",
              check=optional_lufs, toml=(float, str)),
    RunOption("--align", "delay alignment policy before intrusive metrics", choices=("xcorr", "report", "none"),
              default="xcorr"),
    RunOption("--no-progress", "no progress bar (the plan and the summary are still printed)", action=_Flag,
              default=False, toml=(bool,)),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench run``, each checked while parsing (a bad value: one line, exit 2)."""
    p.add_argument("--config", default=None, type=existing_file, metavar="SWEEP.toml",
                   help="take codecs, datasets, metrics and settings from this TOML sweep file (see README); "
                        "options given on the command line override it")
    for opt in RUN_OPTIONS:
        extra: dict[str, Any] = {} if opt.action is _Flag else {"type": opt.check, "choices": opt.choices,
                                                                   "metavar": opt.metavar}
        p.add_argument(opt.flag, action=opt.action, default=opt.default, help=opt.help, **extra)


def sweep_settings() -> dict[str, Setting]:
    """What a sweep file's [run] table may set: every option of ``bench run`` but --config, checked as the option is."""
    from bench.sweep import Setting

    return {opt.dest: Setting(opt.toml, opt.parse if opt.toml != (dict,) else None) for opt in RUN_OPTIONS}


def read_item_ids(path: str) -> list[str]:
    """One item id per line (blank lines and '#' comments ignored)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--items {path}: cannot read it ({exc})") from None
    ids = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise UserError(f"--items {path}: lists no item ids")
    return ids


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The frozen run configuration of parsed options (checks $BENCH_CACHE_DIR and reads --items)."""
    from bench.cli.args import check_env_dir

    check_env_dir("BENCH_CACHE_DIR")
    item_ids = read_item_ids(args.items) if args.items else None
    return RunConfig(codecs=args.codecs, dataset=args.dataset, split=args.split, root=args.root,
                     dataset_options=dict(args.dataset_opt), metrics=args.metrics, limit=args.limit, seed=args.seed,
                     item_ids=item_ids, out_dir=args.out, cache_dir=args.cache_dir, workers=args.workers,
                     device=args.device, engine=args.engine, address=args.address, channel_policy=args.channels,
                     loudness_lufs=args.loudness, align=args.align, progress=not args.no_progress,
                     refresh=args.refresh)


# --- a sweep file under the command line ----------------------------------------------------------

def _merged(args: argparse.Namespace, file_values: dict[str, Any]) -> argparse.Namespace:
    """The options of one run: the file's values, overridden by those given on the command line.

    Dataset options merge key by key (the command line's win); a dataset or split given on the
    command line replaces the file's choice of dataset altogether (its options too).
    """
    given = given_options(args)
    values = vars(args).copy()
    if given & {"dataset", "split"}:
        file_values = {k: v for k, v in file_values.items() if k not in ("dataset", "split", "dataset_opt")}
    for dest, value in file_values.items():
        if dest == "dataset_opt":
            values[dest] = {**value, **dict(args.dataset_opt)}
        elif dest not in given:
            values[dest] = value
    return argparse.Namespace(**values)


def run_options(args: argparse.Namespace, sweep: Sweep | None) -> list[argparse.Namespace]:
    """The options of each run: one without a sweep file, one per dataset and split of the file (or one when
    the command line names the dataset)."""
    if sweep is None:
        return [args]
    runs = sweep.runs()
    if given_options(args) & {"dataset", "split"}:
        runs = [dict(sweep.settings)]  # the command line's dataset: one run, [run]'s settings without [[datasets]]
    return [_merged(args, values) for values in runs]


def _overrides(args: argparse.Namespace, sweep: Sweep) -> list[str]:
    """The file's settings that the command line overrode (recorded in the manifest)."""
    in_file = {k for run in sweep.runs() for k in run}
    return sorted(f"--{k.replace('_', '-')}" for k in given_options(args) & in_file)


# --- the plan -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanCounts:
    """What a run will compute: items, codec points, metrics, pairs, values, and what a resumed run has."""

    items: int
    points: int
    metrics: int
    pairs: int
    values: int  # (item, point, metric) triples whose metric applies to the item
    not_applicable: int
    done: int  # triples already in the store (scored, failed or not applicable), before resume's checks


def plan_counts(plan: _Plan, cfg: RunConfig) -> PlanCounts:
    """Count a plan's work; the finished part comes from the run's store, opened read-only, when it exists.

    A store made with other value settings is refused here, as the run would refuse it
    (``RunMismatchError``), so that the refusal is the one line on stderr, before the plan.
    """
    from bench.pipeline.identity import check_same_settings, value_settings
    from bench.store import Store, StoreError

    applicable = sum(m.applies_to(item.domain, bool(item.transcript))[0] for item in plan.items for m in plan.metrics)
    n_points, n_metrics = len(plan.selections), len(plan.metrics)
    total = len(plan.items) * n_points * n_metrics
    done = 0
    db = plan.run_dir / "results.sqlite"
    if db.is_file():
        run_id = plan.run_dir.resolve().name
        wanted = {(it.id, s.key, s.op.name, m.name) for it in plan.items for s in plan.selections for m in plan.metrics}
        try:
            with Store(db, readonly=True) as store:
                check_same_settings(store, run_id, plan.run_dir, value_settings(cfg, plan.ds, plan.split))
                done = 0 if cfg.refresh else len(store.done_results(run_id) & wanted)
        except StoreError:
            done = 0  # the run itself reports what is wrong with the file
    return PlanCounts(len(plan.items), n_points, n_metrics, len(plan.items) * n_points, applicable * n_points,
                      total - applicable * n_points, done)


def _points_text(plan: _Plan) -> str:
    """The codec points of a plan, grouped by codec: ``opus@6,12; dac@1,2,4,8``."""
    grouped: dict[str, list[str]] = {}
    for sel in plan.selections:
        grouped.setdefault(sel.key, []).append(sel.op.name)
    return "; ".join(f"{key}@{','.join(ops)}" for key, ops in grouped.items())


def plan_lines(plan: _Plan, cfg: RunConfig, c: PlanCounts) -> list[str]:
    """The plan as printed before work starts: the counts, then where the run goes and how."""
    from bench.devices import resolve_device


    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    na = f" ({c.not_applicable} not applicable)" if c.not_applicable else ""
    resume = f"; {c.done} of {c.pairs * c.metrics} already done (resume)" if c.done else ""
    refresh = "; --refresh: everything is recomputed" if cfg.refresh else ""
    workers = cfg.workers or "one per core"
    return [f"plan: {n(c.items, 'item')} x {n(c.points, 'codec point')} ({_points_text(plan)}) x "
            f"{n(c.metrics, 'metric')} ({','.join(m.name for m in plan.metrics)}) = {n(c.pairs, 'pair')}, "
            f"{n(c.values, 'value')}{na}{resume}{refresh}",
            f"      {plan.ds.name}/{plan.split} -> {plan.run_dir} (device {resolve_device(cfg.device)}, engine "
            f"{cfg.engine}, metric workers: {workers})"]


# --- the command ----------------------------------------------------------------------------------

def summarize(run_dir: Path) -> tuple[str, bool]:
    """The closing line of a run (scored, failed and their commonest reasons) and whether anything scored."""
    from collections import Counter

    from bench.store import Store

    with Store(run_dir / "results.sqlite", readonly=True) as store:
        rid = store.run_ids()[-1]
        rows = store.conn.execute("SELECT status, error FROM results WHERE run_id=?", (rid,)).fetchall()
        n_skipped = store.count("skipped", rid)
    n_ok = sum(1 for status, _ in rows if status == "ok")
    reasons = Counter(err or "unknown" for status, err in rows if status != "ok")
    line = f"{n_ok} results scored, {len(rows) - n_ok} failed, {n_skipped} not applicable in {run_dir}/results.sqlite"
    if reasons:
        top = "; ".join(f"{n} x {reason[:160]}" for reason, n in reasons.most_common(3))
        line += f"\n  failures: {top}" + (f"; and {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else "")
    return line, n_ok > 0


def _once(emit: Callable[[str], None]) -> Callable[[str], None]:
    """A notice printer that prints each distinct message once (the plan and the run resolve the same codecs)."""
    seen: set[str] = set()

    def say(message: str) -> None:
        if message not in seen:
            seen.add(message)
            emit(message)

    return say


def _stderr(message: str) -> None:
    """Print one notice line on stderr."""
    print(message, file=sys.stderr)


def plan_runs(cfgs: list[RunConfig], say: Callable[[str], None]) -> list[tuple[RunConfig, _Plan]]:
    """Plan every run before any starts (a mistake in the last one costs nothing); several runs get
    ``OUT/DATASET-SPLIT`` (default ``runs/DATASET-SPLIT``), and no two may share a run directory."""
    from bench.pipeline.run import default_run_dir, plan_run

    planned: list[tuple[RunConfig, _Plan]] = []
    for cfg in cfgs:
        plan = plan_run(cfg if len(cfgs) == 1 else replace(cfg, out_dir=None), say)
        if len(cfgs) > 1:
            run_dir = default_run_dir(plan.ds.name, plan.split)
            run_dir = Path(cfg.out_dir) / run_dir.name if cfg.out_dir else run_dir
            cfg, plan = replace(cfg, out_dir=str(run_dir)), replace(plan, run_dir=run_dir)
        clash = next((p for _, p in planned if p.run_dir.resolve() == plan.run_dir.resolve()), None)
        if clash is not None:
            raise UserError(f"two runs of the sweep would share the run directory {plan.run_dir} "
                            f"({clash.ds.name}/{clash.split} and {plan.ds.name}/{plan.split}); give each "
                            "dataset and split once")
        planned.append((cfg, plan))
    return planned


def main(args: argparse.Namespace) -> int:
    """``bench run``: plan every run, print the plans, run each, print its summary; exit 3 when one scored nothing."""
    from bench.pipeline.run import run_benchmark
    from bench.sweep import load_sweep

    sweep = load_sweep(args.config, sweep_settings()) if args.config else None
    notes: list[str] = []  # held back until every run is planned: a mistake stays the one line on stderr
    planned = plan_runs([config_from_args(ns) for ns in run_options(args, sweep)], notes.append)
    counts = [plan_counts(plan, cfg) for cfg, plan in planned]
    say = _once(_stderr)
    for note in notes:
        say(note)
    if len(planned) > 1:
        say(f"sweep {args.config}: {len(planned)} runs, one after the other")
    for (cfg, plan), c in zip(planned, counts):
        for line in plan_lines(plan, cfg, c):
            _stderr(line)
    extra = {"sweep": {**sweep.provenance(), "command_line_overrides": _overrides(args, sweep)}} if sweep else None
    code = 0
    for cfg, _ in planned:
        t0 = time.perf_counter()
        run_dir = run_benchmark(cfg, say=say, manifest_extra=extra)
        line, any_scored = summarize(run_dir)
        print(f"{line}  [{time.perf_counter() - t0:.1f} s]")
        if not any_scored:
            print(f"error: nothing was scored in {run_dir} (every pair failed; reasons above)", file=sys.stderr)
            code = EXIT_NOTHING_SCORED
        else:
            print(f"next: bench report {run_dir}")
    return code
