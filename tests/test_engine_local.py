"""The local engine: codec jobs beside the metric pool, device metrics inside the codec job, timings recorded.

On a GPU the torch metrics are scored inside each codec job on the codec's device; here that path is
forced on the CPU and must give the rows the pool gives.
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from bench.pipeline import run as run_mod
from bench.pipeline.run import run_benchmark
from bench.types import RunConfig

COMMON = dict(codecs="opus@6,dac@1,dac@2", dataset="demo", metrics="si_sdr,mel_distance,stoi", limit=3,
              progress=False, device="cpu")


def _rows(run_dir, sql="SELECT item_id, codec, op, metric, value, status FROM results"):
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return sorted(con.execute(sql).fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool")
    return run_benchmark(RunConfig(out_dir=str(tmp / "run"), cache_dir=str(tmp / "cache"), workers=2, **COMMON))


def test_device_metrics_in_the_codec_job_equal_the_pool(pool_run, tmp_path, monkeypatch):
    forced = []

    def on_the_job(metrics, device):
        forced[:] = [m.name for m in metrics if m.on_device]
        return list(forced)

    monkeypatch.setattr(run_mod, "device_metrics", on_the_job)
    job_run = run_benchmark(RunConfig(out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), workers=2,
                                      **COMMON))
    assert set(forced) == {"si_sdr", "mel_distance"}  # stoi is not a torch metric: it stays in the pool
    a, b = _rows(pool_run), _rows(job_run)
    assert [r[:4] + r[5:] for r in a] == [r[:4] + r[5:] for r in b]
    for x, y in zip(a, b):
        assert (x[4] is None and y[4] is None) or math.isclose(x[4], y[4], rel_tol=1e-6, abs_tol=1e-6)


def test_timings_are_recorded_for_every_row(pool_run):
    coded = _rows(pool_run, "SELECT codec, op, encode_s, decode_s, timing FROM coded WHERE status='ok'")
    assert coded and all(e is not None and e >= 0 and d is not None and d >= 0 for _, _, e, d, _ in coded)
    assert all(t for *_, t in coded)  # how the time was attributed is said for every pair
    dac = [t for c, _, _, _, t in coded if c == "dac"]
    assert any("shared" in t for t in dac)  # dac@1 and dac@2 share one full-depth encode
    results = _rows(pool_run, "SELECT metric, compute_s FROM results WHERE status='ok'")
    assert results and all(c is not None and c > 0 for _, c in results)
    timing = json.loads((pool_run / "manifest.json").read_text())["timing"]
    assert timing["engine"] == "local" and timing["workers"] == 2 and timing["wall_s"] > 0


def test_a_rerun_reads_every_pair_from_the_cache(pool_run, tmp_path):
    again = run_benchmark(RunConfig(out_dir=str(tmp_path / "again"), cache_dir=str(pool_run.parent / "cache"),
                                    workers=1, **COMMON))
    before = _rows(pool_run, "SELECT item_id, codec, op, cache_key, n_bytes FROM coded")
    after = _rows(again, "SELECT item_id, codec, op, cache_key, n_bytes FROM coded")
    assert before == after


def test_device_auto_resolves_to_the_cpu_here(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = dict(COMMON, codecs="dac@1", metrics="si_sdr", limit=1, device="auto")
    out = run_benchmark(RunConfig(out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), **cfg))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["device"] == "cpu"


def test_pool_workers_start_with_one_blas_thread_unless_the_user_chose(monkeypatch):
    import os

    from bench.pipeline.engine import LocalEngine
    from bench.workers import THREAD_VARS

    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is kept
    engine = LocalEngine(2)
    try:
        seen = {name: engine._pool.submit(os.getenv, name).result(timeout=120) for name in THREAD_VARS}
    finally:
        engine.shutdown()
    assert seen.pop("OMP_NUM_THREADS") == "3"
    assert set(seen.values()) == {"1"}, seen  # OpenBLAS, MKL, ... one thread per worker: workers share the cores
