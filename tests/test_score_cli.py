"""``bench score``: files made elsewhere are scored through the same pipeline, with the same numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main as bench_main

PESQ_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "metrics-ref" / "pesq" / "audio"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = bench_main(["score", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def tone_bursts(rate_hz: int, duration_s: float = 1.5, seed: int = 0) -> np.ndarray:
    """Harmonic bursts with pauses: enough structure for the cross-correlation lag estimate."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    env = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(np.float64)
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((220, 440, 660, 1320), 1))
    return (0.2 * env * x + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def write(path: Path, x: np.ndarray, rate_hz: int) -> str:
    import soundfile as sf

    sf.write(str(path), x, rate_hz, subtype="FLOAT")
    return str(path)


def test_reference_pair_gives_reference_values(capsys):
    if not PESQ_AUDIO.exists():
        pytest.skip("shared metrics-ref folder absent")
    rc, out, _ = run_cli(capsys, str(PESQ_AUDIO / "speech.wav"), str(PESQ_AUDIO / "speech_bab_0dB.wav"),
                         "--domain", "speech", "--metrics", "pesq_wb,pesq_nb,stoi,si_sdr", "--json")
    assert rc == 0
    result = json.loads(out)
    m = result["metrics"]
    assert result["lag_samples"] == 0 and result["sample_rate_hz"] == 16000
    assert m["pesq_wb"]["value"] == 1.0832337141036987
    assert m["pesq_nb"]["value"] == 1.6072081327438354
    assert round(m["stoi"]["value"], 4) == 0.6739
    assert m["si_sdr"]["value"] == pytest.approx(0.10378976323555572, rel=1e-9)


def test_rate_mismatch_delay_and_table(tmp_path, capsys):
    ref = tone_bursts(48000)
    delay = 120
    deg48 = np.concatenate([np.zeros(delay, np.float32), ref])[: len(ref)] * 0.5
    from bench.audio import resample

    deg24 = resample(deg48, 48000, 24000)
    ref_path, deg_path = write(tmp_path / "ref.wav", ref, 48000), write(tmp_path / "deg.wav", deg24, 24000)
    rc, out, _ = run_cli(capsys, ref_path, deg_path, "--metrics", "si_sdr,lsd,pesq_wb", "--json")
    assert rc == 0
    result = json.loads(out)
    assert result["sample_rate_hz"] == 48000
    assert any("resampled 24000 -> 48000" in n for n in result["notes"])
    assert result["lag_samples"] == delay
    assert result["metrics"]["si_sdr"]["value"] > 20  # delay removed, scale ignored, only 24k band-limit left
    assert result["metrics"]["pesq_wb"]["status"] == "skipped"
    assert "speech only" in result["metrics"]["pesq_wb"]["reason"]
    # without alignment the same pair scores far worse: the policy matters and is applied
    rc, out, _ = run_cli(capsys, ref_path, deg_path, "--metrics", "si_sdr", "--align", "none", "--json")
    assert json.loads(out)["metrics"]["si_sdr"]["value"] < 0
    # the table form lists every metric with its status
    rc, out, _ = run_cli(capsys, ref_path, deg_path, "--metrics", "si_sdr,pesq_wb")
    assert rc == 0 and "si_sdr" in out and "skipped: pesq_wb applies to speech only" in out


def test_pairs_csv_json_and_out_file(tmp_path, capsys):
    rate = 16000
    ref = tone_bursts(rate)
    rng = np.random.default_rng(3)
    clean = write(tmp_path / "ref.wav", ref, rate)
    noisy = write(tmp_path / "noisy.wav", ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32), rate)
    silent = write(tmp_path / "silent.wav", np.zeros_like(ref), rate)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("id,ref,deg,domain\n"
                     "a,ref.wav,noisy.wav,music\n"
                     f"b,{clean},ref.wav,\n"
                     "c,ref.wav,silent.wav,speech\n")
    out_csv = tmp_path / "scores.csv"
    rc, out, _ = run_cli(capsys, "--pairs", str(pairs), "--metrics", "si_sdr,mel_distance,stoi", "--json",
                         "--out", str(out_csv))
    assert rc == 0
    results = {r["id"]: r for r in json.loads(out)}
    assert set(results) == {"a", "b", "c"}
    assert results["a"]["metrics"]["stoi"]["status"] == "skipped"  # music
    assert results["b"]["domain"] == "general"  # empty column falls back to --domain
    assert results["b"]["metrics"]["mel_distance"]["value"] == 0.0
    assert results["a"]["metrics"]["mel_distance"]["value"] > 0.1
    c = results["c"]["metrics"]["si_sdr"]
    assert c["status"] == "failed" and c["value"] is None and "silent" in c["reason"]
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 9
    row = next(r for r in rows if r["id"] == "a" and r["metric"] == "si_sdr")
    assert math.isclose(float(row["value"]), results["a"]["metrics"]["si_sdr"]["value"])


def test_errors_name_the_problem(tmp_path, capsys):
    ref = write(tmp_path / "ref.wav", tone_bursts(16000, 0.5), 16000)
    rc, _, err = run_cli(capsys, ref, str(tmp_path / "missing.wav"), "--metrics", "si_sdr")
    assert rc == 1 and "missing.wav" in err and "not found" in err
    rc, _, err = run_cli(capsys, ref, ref, "--metrics", "si_sdrr")
    assert rc == 2 and "si_sdr" in err
    rc, _, err = run_cli(capsys, ref)
    assert rc == 2 and "REF and DEG" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("reference,degraded\nx,y\n")
    rc, _, err = run_cli(capsys, "--pairs", str(bad))
    assert rc == 2 and "'ref' and 'deg'" in err
