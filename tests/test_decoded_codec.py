"""``decoded:DIR``: decodes another tool made become a run, with measured kbps when bitstream sizes sit beside them."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from bench.cli import main as bench_main
from bench.pipeline.run import run_benchmark
from bench.types import RunConfig

RATE = 16000


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data" / "speech"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    refs = {}
    for i in range(3):
        x = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(RATE)).astype(np.float32)
        sf.write(root / f"utt{i}.wav", x, RATE, subtype="FLOAT")
        refs[f"utt{i}"] = x
    return tmp_path / "data", refs


def _decodes(folder, refs, noise, *, rate=RATE, truncate=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, x in refs.items():
        y = x + noise * rng.standard_normal(x.size).astype(np.float32)
        if rate != RATE:
            import soxr

            y = soxr.resample(y, RATE, rate)
        if truncate == name:
            y = y[: y.size // 2]
        sf.write(folder / f"{name}.wav", y, rate, subtype="FLOAT")
    return folder


def _run(root, dec, out, cache):
    return run_benchmark(RunConfig(codecs=f"decoded:{dec}", dataset="folder", root=str(root), metrics="si_sdr",
                                   out_dir=str(out), cache_dir=str(cache), workers=1, progress=False, device="cpu"))


def _coded(run):
    con = sqlite3.connect(run / "results.sqlite")
    try:
        return {r[0].split("/")[-1]: r[1:] for r in con.execute("SELECT item_id, measured_kbps, n_bytes, nominal_kbps, timing, status "
                                                 "FROM coded")}
    finally:
        con.close()


def _values(run):
    con = sqlite3.connect(run / "results.sqlite")
    try:
        return {r[0].split("/")[-1]: (r[1], r[2]) for r in con.execute("SELECT item_id, value, status FROM results")}
    finally:
        con.close()


def test_decodes_are_scored_and_the_rate_is_not_measured_without_bitstreams(dataset, tmp_path):
    root, refs = dataset
    dec = _decodes(tmp_path / "dec", refs, 0.01, rate=24000)  # another rate: resampled by the harness
    (dec / "bench-decoded.json").write_text(json.dumps({"nominal_kbps": 6.0, "name": "elsewhere"}))
    run = _run(root, dec, tmp_path / "run", tmp_path / "cache")
    coded = _coded(run)
    assert len(coded) == 3
    for measured, n_bytes, nominal, timing, status in coded.values():
        assert status == "ok" and measured is None and n_bytes is None and nominal == 6.0
        assert "rate not measured" in timing
    for value, status in _values(run).values():
        assert status == "ok" and 15 < value < 35  # noise at about -29 dB under a 0.3 sine


def test_bitstream_sizes_give_measured_kbps(dataset, tmp_path):
    root, refs = dataset
    dec = _decodes(tmp_path / "dec", refs, 0.01)
    (dec / "utt0.bin").write_bytes(b"\0" * 750)  # 750 bytes over 1 s: 6 kbps
    (dec / "bytes.csv").write_text("id,n_bytes\nutt1,1500\n")
    coded = _coded(_run(root, dec, tmp_path / "run", tmp_path / "cache"))
    assert coded["utt0"][0] == pytest.approx(6.0) and coded["utt0"][1] == 750
    assert coded["utt1"][0] == pytest.approx(12.0)
    assert coded["utt2"][0] is None  # no size for it: not measured, never guessed


def test_a_missing_or_truncated_decode_fails_only_its_pair(dataset, tmp_path):
    root, refs = dataset
    dec = _decodes(tmp_path / "dec", refs, 0.01, truncate="utt1")
    (dec / "utt2.wav").unlink()
    values = _values(_run(root, dec, tmp_path / "run", tmp_path / "cache"))
    assert values["utt0"][1] == "ok"
    assert values["utt1"][1] == "failed" and values["utt2"][1] == "failed"


def test_report_and_gate_work_on_a_codec_bench_never_ran(dataset, tmp_path):
    root, refs = dataset
    dec = _decodes(tmp_path / "dec", refs, 0.01)
    run = _run(root, dec, tmp_path / "run", tmp_path / "cache")
    assert bench_main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").is_file()
    baseline = tmp_path / "baseline.json"
    assert bench_main(["baseline", "save", str(run), "--out", str(baseline)]) == 0
    worse = _run(root, _decodes(tmp_path / "worse", refs, 0.2), tmp_path / "run2", tmp_path / "cache")
    assert bench_main(["gate", "--candidate", str(worse), "--baseline", str(baseline)]) == 1  # much noisier decodes: gate fails
