#!/usr/bin/env python
"""Benchmark of the harness core (issue 2), printing figures; not a timed test.

1. Wall time of the README main command (``bench run --codecs all`` on the demo set, then
   ``bench report``) with an empty reconstruction cache and a fresh run directory.
2. The same commands again with everything cached (target: < 10% of the first run).
3. The metric pool: scoring the cached demo run with 1 worker vs one per core.

Usage: python scripts/bench_runner.py [--codecs all] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--codecs", default="all")
    ap.add_argument("--keep", default=None, help="work directory to keep (default: a temp dir)")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="bench-runner-")
    env = dict(os.environ, BENCH_CACHE_DIR=os.path.join(work, "cache"))
    bench = [sys.executable, "-m", "bench.cli"]
    run_dir = os.path.join(work, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(env["BENCH_CACHE_DIR"], ignore_errors=True)

    # demo generation is part of a fresh user's first run: count it separately
    t_demo = timed(bench + ["ls", "datasets"], env)
    t0 = time.perf_counter()
    subprocess.run(bench + ["run", "--codecs", args.codecs, "--out", run_dir, "--no-progress"], check=True, env=env)
    t_run = time.perf_counter() - t0
    t_report = timed(bench + ["report", run_dir], env)
    first = t_run + t_report

    t_rerun = timed(bench + ["run", "--codecs", args.codecs, "--out", run_dir, "--no-progress"], env)
    t_rereport = timed(bench + ["report", run_dir], env)

    # pool speed-up: rescore from the cache into fresh run dirs (coding is cached, scoring is not)
    pool = {}
    for workers in (1, os.cpu_count() or 1):
        d = os.path.join(work, f"pool{workers}")
        shutil.rmtree(d, ignore_errors=True)
        pool[workers] = timed(bench + ["run", "--codecs", args.codecs, "--out", d, "--workers", str(workers),
                                       "--no-progress"], env)

    cpus = os.cpu_count()
    print(f"\nmachine: {cpus} CPU cores; work dir {work}")
    print(f"{'step':<48} {'seconds':>8}")
    print(f"{'bench ls (imports + demo set generation)':<48} {t_demo:8.1f}")
    print(f"{'first run: bench run --codecs ' + args.codecs:<48} {t_run:8.1f}")
    print(f"{'first report: bench report':<48} {t_report:8.1f}")
    print(f"{'first run + report (README main command)':<48} {first:8.1f}")
    print(f"{'rerun, everything cached: bench run':<48} {t_rerun:8.1f}")
    print(f"{'rerun report':<48} {t_rereport:8.1f}")
    print(f"{'rerun / first run':<48} {100 * (t_rerun + t_rereport) / first:7.1f}%")
    print(f"{'scoring from cache, 1 worker':<48} {pool[1]:8.1f}")
    if cpus and cpus > 1:
        print(f"{f'scoring from cache, {cpus} workers':<48} {pool[cpus]:8.1f}")
        print(f"{'metric pool speed-up':<48} {pool[1] / pool[cpus]:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
