"""pcm16 is lossless at the item's own rate and channels: kbps = rate x 16 x channels, SI-SDR = the 16-bit limit."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from bench.pipeline.run import run_benchmark
from bench.types import RunConfig


def _item(folder, name, rate, channels, seconds=1.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.02 * rng.standard_normal(t.size)
                  for c in range(channels)], axis=1).astype(np.float32)
    sf.write(folder / name, x, rate, subtype="FLOAT")
    return x.T


def _si_sdr_db(ref, est):
    ref, est = ref.astype(np.float64), est.astype(np.float64)
    alpha = np.dot(est, ref) / np.dot(ref, ref)
    target = alpha * ref
    return 10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2))


@pytest.mark.parametrize("rate,channels,policy", [(24000, 1, "mono"), (48000, 2, "keep")])
def test_pcm16_codes_at_the_item_rate_and_channels(tmp_path, rate, channels, policy):
    data = tmp_path / "speech"
    data.mkdir()
    x = _item(data, "a.wav", rate, channels)
    out = run_benchmark(RunConfig(codecs="pcm16", dataset="folder", root=str(tmp_path), metrics="si_sdr", progress=False,
                                  out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), workers=1,
                                  channel_policy=policy, device="cpu"))
    con = sqlite3.connect(out / "results.sqlite")
    nominal, measured, n_bytes, audio_s = con.execute(
        "SELECT nominal_kbps, measured_kbps, n_bytes, audio_s FROM coded").fetchone()
    (si_sdr,) = con.execute("SELECT value FROM results WHERE metric='si_sdr'").fetchone()
    con.close()
    assert nominal == pytest.approx(rate * 16 * channels / 1000)
    payload = 2 * channels * x.shape[-1]
    assert payload < n_bytes < payload + 64  # the samples and the bench header, nothing resampled
    assert measured == pytest.approx(rate * 16 * channels / 1000, rel=1e-3)
    # the metric scores the mono mix: its SI-SDR is that of 16-bit quantisation, nothing more
    q = np.clip(np.rint(x.astype(np.float64) * 32768), -32768, 32767) / 32768
    expected = _si_sdr_db(x.mean(axis=0), q.mean(axis=0).astype(np.float32))
    assert si_sdr == pytest.approx(expected, abs=0.05)
    assert math.isfinite(si_sdr) and si_sdr > 70
