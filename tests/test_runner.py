"""The runner end to end: rows, caching, resume after a kill, bad inputs, the CLI."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.cli import main as bench_main
from bench.pipeline.run import run_benchmark
from bench.types import RunConfig


def rows(run_dir: Path, sql: str = "SELECT item_id, codec, op, metric, value, status, error FROM results") -> list[tuple]:
    with sqlite3.connect(run_dir / "results.sqlite") as c:
        return c.execute(sql).fetchall()


def test_pcm16_on_demo_is_near_lossless(tmp_path):
    run = run_benchmark(RunConfig(codecs="pcm16", dataset="demo", metrics="si_sdr,mel_distance", limit=3,
                                  out_dir=str(tmp_path / "run"), workers=1, progress=False))
    got = rows(run)
    assert len(got) == 3 * 2
    for item, codec, op, metric, value, status, error in got:
        assert status == "ok", error
        if metric == "si_sdr":
            assert value > 60, (item, value)  # 16-bit quantisation noise only
        else:
            assert value < 0.1, (item, value)
    kbps = rows(run, "SELECT measured_kbps, nominal_kbps FROM coded")
    assert all(abs(m - n) / n < 0.02 for m, n in kbps)


def test_rerun_reuses_cache_and_adds_metric(tmp_path):
    out = str(tmp_path / "run")
    cfg = RunConfig(codecs="opus@12", dataset="demo", metrics="si_sdr", limit=2, out_dir=out, workers=1, progress=False)
    run_benchmark(cfg)
    cache_files = sorted(Path(os.environ["BENCH_CACHE_DIR"], "recon").rglob("*.bin"))
    mtimes = {p: p.stat().st_mtime_ns for p in cache_files}
    cfg = dataclasses.replace(cfg, metrics="si_sdr,mel_distance")  # RunConfig is frozen
    run = run_benchmark(cfg)
    assert {p: p.stat().st_mtime_ns for p in cache_files} == mtimes  # nothing re-encoded
    assert len(rows(run)) == 2 * 2
    assert len(rows(run, "SELECT * FROM coded")) == 2


def _write(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    sf.write(str(path), x.T if x.ndim == 2 else x, sr, subtype=subtype)


@pytest.fixture()
def bad_folder(tmp_path) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    # band-limited (well below 4 kHz) so resampling through a codec's rate is transparent
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1330 * t)).astype(np.float32)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + rng.bytes(200))
    (d / "empty.wav").write_bytes(b"")
    _write(d / "zeros.wav", np.zeros(16000, np.float32), 16000)
    nan = tone.copy()
    nan[100:110] = np.nan
    nan[200] = np.inf
    _write(d / "nan.wav", nan, 16000, "FLOAT")
    _write(d / "clipped.wav", np.clip(tone * 8, -1, 1), 16000)
    _write(d / "one_sample.wav", tone[:1], 16000)
    _write(d / "short_0p1s.wav", tone[:1600], 16000)
    _write(d / "six_channel.wav", np.stack([tone * (i + 1) / 6 for i in range(6)]), 16000)
    _write(d / "pcm24.wav", tone, 16000, "PCM_24")
    _write(d / "rate8k.wav", tone[::2], 8000)
    t96 = np.arange(96000) / 96000
    _write(d / "rate96k.wav", (0.3 * np.sin(2 * np.pi * 440 * t96)).astype(np.float32), 96000)
    return d


def test_bad_inputs_are_recorded_and_the_run_goes_on(tmp_path, bad_folder):
    run = run_benchmark(RunConfig(codecs="pcm16,opus@12", dataset="folder", root=str(bad_folder),
                                  dataset_options={"domain": "general"}, metrics="si_sdr,mel_distance",
                                  out_dir=str(tmp_path / "run"), workers=1, progress=False))
    res = {(i, c, m): (v, s, e) for i, c, o, m, v, s, e in rows(run)}
    items = {i for i, _, _ in res}
    assert len(items) == 11  # every file has rows: nothing is dropped
    assert len(res) == 11 * 2 * 2

    def check_failed(item: str, *needles: str) -> None:
        for (i, c, m), (v, s, e) in res.items():
            if i == item:
                assert s == "failed" and v is None, (item, c, m, v, s)
                for n in needles:
                    assert n in e, (item, e)

    check_failed("corrupt", "corrupt.wav")
    check_failed("empty", "empty.wav", "empty")
    check_failed("nan", "nan.wav", "NaN")
    # silence: SI-SDR is undefined -> NaN with a reason, never 0
    v, s, e = res[("zeros", "pcm16", "si_sdr")]
    assert s == "failed" and e and v is None
    # a single sample is too short for the spectral metric
    v, s, e = res[("one_sample", "pcm16", "mel_distance")]
    assert s == "failed" and e
    for item in ("clipped", "short_0p1s", "six_channel", "pcm24", "rate8k", "rate96k"):
        for codec in ("pcm16", "opus"):
            v, s, e = res[(item, codec, "si_sdr")]
            assert s == "ok" and math.isfinite(v), (item, codec, e)
    assert res[("pcm24", "pcm16", "si_sdr")][0] > 60
    assert res[("rate96k", "pcm16", "si_sdr")][0] > 40
    notes = rows(run, "SELECT extra FROM items WHERE item_id='clipped'")[0][0]
    assert "clipped" in notes
    coded = rows(run, "SELECT item_id, status, error FROM coded WHERE item_id IN ('corrupt','empty','nan')")
    assert len(coded) == 6 and all(s == "failed" and e for _, s, e in coded)


def _bench(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], env=env or os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


SLOW_METRIC = """
import time
from bench.api import MetricSpec, register_metric

def slow_peak(preds, target, *, sample_rate_hz, items=None):
    time.sleep(0.15)  # slow enough that a kill lands in the middle of the run
    return (preds - target).abs().amax(dim=-1)

register_metric(MetricSpec("slow_peak", slow_peak, higher_is_better=False, unit="", sample_rate_hz=None))
"""


def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path):
    env = dict(os.environ, BENCH_CACHE_DIR=str(tmp_path / "cache"))
    plugin = tmp_path / "slow_metric.py"
    plugin.write_text(SLOW_METRIC)
    args = ["run", "--plugin", str(plugin), "--codecs", "opus", "--dataset", "demo", "--limit", "3",
            "--metrics", "si_sdr,slow_peak", "--workers", "1", "--no-progress"]
    killed = tmp_path / "killed"
    # warm the demo set so the kill lands during coding
    subprocess.run([sys.executable, "-m", "bench.cli", "ls", "datasets"], env=env, check=True, capture_output=True)
    proc = _bench(*args, "--out", str(killed), env=env, start_new_session=True)
    db = killed / "results.sqlite"
    deadline = time.time() + 120
    n_before = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                n_before = rows(killed, "SELECT COUNT(*) FROM results")[0][0]
            except sqlite3.OperationalError:
                n_before = 0
            if n_before >= 4:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "run finished before it could be killed: " + proc.communicate()[1][-500:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = set(rows(killed))
    assert 4 <= len(partial) < 30

    resumed = _bench(*args, "--out", str(killed), env=env)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    final = rows(killed)
    assert len(final) == len(set((i, c, o, m) for i, c, o, m, *_ in final)) == 3 * 5 * 2
    assert partial <= set(final)  # nothing scored before the kill was lost or changed

    clean = tmp_path / "clean"
    fresh = _bench(*args, "--out", str(clean), env=env)
    _, err = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err[-2000:]
    assert sorted(rows(clean)) == sorted(final)


def test_metric_pool_matches_single_worker(tmp_path):
    common = dict(codecs="opus@6,opus@24", dataset="demo", metrics="si_sdr,mel_distance", limit=2, progress=False)
    one = run_benchmark(RunConfig(out_dir=str(tmp_path / "w1"), workers=1, **common))
    two = run_benchmark(RunConfig(out_dir=str(tmp_path / "w2"), workers=2, **common))
    a, b = sorted(rows(one)), sorted(rows(two))
    assert [r[:4] + r[5:] for r in a] == [r[:4] + r[5:] for r in b]
    # worker processes run torch single-threaded: sums may differ in the last bits
    assert np.allclose([r[4] for r in a], [r[4] for r in b], rtol=1e-9, atol=0)


def test_cli_errors_and_listing(tmp_path, capsys):
    assert bench_main(["run", "--codecs", "opsu", "--dataset", "demo", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'opus'" in capsys.readouterr().err
    assert bench_main(["run", "--codecs", "opus@13", "--dataset", "demo", "--out", str(tmp_path / "x")]) == 2
    assert "operating point" in capsys.readouterr().err
    assert bench_main(["run", "--dataset", "demoo", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'demo'" in capsys.readouterr().err
    assert bench_main(["ls", "codecs"]) == 0
    out = capsys.readouterr().out
    assert "opus" in out and "pcm16" in out
    assert bench_main(["ls", "metrics"]) == 0
    assert "si_sdr" in capsys.readouterr().out


def test_help_is_fast_and_imports_no_heavy_backends():
    code = ("import sys, time; t=time.time(); from bench.cli import build_parser; build_parser(); "
            "heavy=[m for m in ('torch','av','pesq','visqol','pocketsphinx','matplotlib') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
