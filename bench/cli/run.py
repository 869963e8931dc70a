"""``bench run``: parse and check the options, run (or resume) the benchmark, print the summary line.

Exit codes: 0 done; 2 a mistake in the command (one line); 3 nothing could be scored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.errors import EXIT_NOTHING_SCORED, UserError
from bench.metrics import DEFAULT_METRICS
from bench.types import RunConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench run``, each checked while parsing (a bad value: one line, exit 2)."""
    from bench.cli.args import (
        existing_file,
        key_value,
        non_negative_int,
        optional_lufs,
        positive_int,
        ray_address,
        torch_device,
        writable_dir,
    )

    p.add_argument("--codecs", default="all", help="'all', names, globs, NAME@OP, NAME:CHECKPOINT[@OP]; comma separated")
    p.add_argument("--dataset", default=None, help="dataset name (default: demo; with --split only, the dataset owning it)")
    p.add_argument("--split", default=None, help="dataset split, e.g. test-other (LibriTTS)")
    p.add_argument("--root", default=None, help="dataset root directory (else $BENCH_DATA_ROOT or the config file)")
    p.add_argument("--dataset-opt", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="dataset option (repeatable)")
    p.add_argument("--metrics", default=None, help=f"comma list, 'all' or 'default' ({','.join(DEFAULT_METRICS)})")
    p.add_argument("--limit", type=positive_int, default=None, help="seeded random subset of N items")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--items", default=None, type=existing_file, help="file with one item id per line to restrict the run to")
    p.add_argument("--out", default=None, type=writable_dir, help="run directory (default runs/DATASET-SPLIT)")
    p.add_argument("--cache-dir", default=None, type=writable_dir,
                   help="reconstruction cache (default $BENCH_CACHE_DIR/recon or ~/.cache/bench/recon)")
    p.add_argument("--refresh", action="store_true",
                   help="recode and rescore everything: ignore cached reconstructions and finished rows")
    p.add_argument("--workers", type=positive_int, default=None, help="metric worker processes (default: one per core)")
    p.add_argument("--device", default="auto", type=torch_device,
                   help="torch device for neural codecs and device metrics: auto (CUDA when present, else cpu), cpu, "
                        "cuda, cuda:1")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="where codec work and scoring run: this machine (local) or a Ray cluster (ray; the [ray] "
                        "extra, see docs/scaling.md)")
    p.add_argument("--address", default=None, type=ray_address,
                   help="with --engine ray: the cluster to join, 'auto' or HOST:PORT (default: start a local one)")
    p.add_argument("--channels", default="mono", choices=["mono", "first", "keep"], help="channel policy (default mono mixdown)")
    p.add_argument("--loudness", default=None, type=optional_lufs,
                   help="normalise items to this LUFS before coding (-70..0, e.g. -16); default off")
    p.add_argument("--align", default="xcorr", choices=["xcorr", "report", "none"], help="delay alignment policy before intrusive metrics")
    p.add_argument("--no-progress", action="store_true")


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
                     device=args.device, engine=args.engine, address=args.address, channel_policy=args.channels, loudness_lufs=args.loudness,
                     align=args.align, progress=not args.no_progress, refresh=args.refresh)


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


def main(args: argparse.Namespace) -> int:
    """``bench run``: run or resume, print the summary; exit 3 when nothing was scored."""
    from bench.pipeline.run import run_benchmark

    cfg = config_from_args(args)
    t0 = time.perf_counter()
    run_dir = run_benchmark(cfg)
    line, any_scored = summarize(run_dir)
    print(f"{line}  [{time.perf_counter() - t0:.1f} s]")
    if not any_scored:
        print("error: nothing was scored (every pair failed; reasons above)", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    print(f"next: bench report {run_dir}")
    return 0
