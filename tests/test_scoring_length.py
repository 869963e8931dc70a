"""Length policy of the shared scoring path: a truncated or padded decode is a failure, not a perfect score.

``bench score`` and the runner's ``score_task`` both go through :func:`bench.pipeline.scoring.score_pair`; a
length difference beyond max(1 % of the reference, ``length_tolerance_s``) fails every applicable
metric with a reason naming both lengths, while codec frame padding and delay inside it are trimmed
with a note, as before.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.pipeline import scoring
from bench.datasets.base import Item
from bench.registry import METRICS
from bench.pipeline.scoring import score_pair

RATE = 16000
N = int(1.5 * RATE)
ITEM = Item(id="x", path="x.wav", domain="general")


def _signal(n: int = N, seed: int = 0) -> np.ndarray:
    """Harmonic bursts with noise: structure enough for the delay estimate."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    env = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(np.float64)
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((220, 440, 660, 1320), 1))
    return (0.2 * env * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _specs(*names: str) -> list:
    return [METRICS.get(n) for n in names]


def _score(ref, deg, **kw):
    return score_pair(ref, deg, RATE, _specs("si_sdr", "mel_distance", "stoi"), item=ITEM, **kw)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_truncated_decode_fails_every_applicable_metric(fraction):
    ref = _signal()
    deg = ref[: int(fraction * N)].copy()  # the decode stopped early; what exists is a perfect copy
    res = _score(ref, deg)
    for name in ("si_sdr", "mel_distance"):
        v = res.values[name]
        assert math.isnan(v.value) and f"ref {N} samples" in v.error and f"deg {len(deg)} samples" in v.error
        assert v.error == res.error, name
    assert "stoi" in res.skipped and "stoi" not in res.values  # not applicable stays not applicable
    assert not any("within tolerance" in n for n in res.notes)


def test_padded_decode_fails_too():
    ref = _signal()
    deg = np.concatenate([ref, 0.1 * _signal(N // 2, seed=5)])  # half a clip of extra audio at the end
    res = _score(ref, deg)
    assert math.isnan(res.values["si_sdr"].value)
    assert res.error and f"deg {len(deg)} samples" in res.error


def test_truncated_stereo_decode_fails():
    ref = np.stack([_signal(), _signal(seed=1)])
    res = _score(ref, ref[:, : N // 2])
    assert math.isnan(res.values["mel_distance"].value) and res.error


@pytest.mark.parametrize("extra_s", [0.0, 0.02, 0.04, -0.03])
def test_frame_padding_within_tolerance_is_trimmed_and_noted(extra_s):
    ref = _signal()
    extra = round(extra_s * RATE)
    deg = np.concatenate([ref, np.zeros(extra, np.float32)]) if extra >= 0 else ref[:extra]
    res = _score(ref, deg)
    assert res.error is None
    assert res.values["si_sdr"].value > 40 and res.values["si_sdr"].error is None
    assert any("lengths differ" in n for n in res.notes) == (extra != 0)


def test_codec_delay_with_preroll_passes_after_alignment():
    """A decoder that is late by its delay is that much longer; the lag it is aligned by is not truncation."""
    ref = _signal()
    delay = int(0.15 * RATE)  # 150 ms: beyond the 50 ms slack, inside the 250 ms lag search
    late = np.concatenate([np.zeros(delay, np.float32), ref, np.zeros(160, np.float32)])
    res = _score(ref, late)
    assert res.error is None and res.lag_samples == delay
    assert res.values["si_sdr"].value > 40
    # the same file delayed but cut to the reference's length (what a fixed-length writer does) passes too
    same_len = late[:N]
    res = _score(ref, same_len)
    assert res.error is None and res.lag_samples == delay
    # without an estimated lag the length difference counts as it is
    res = _score(ref, late, align="none")
    assert math.isnan(res.values["si_sdr"].value) and res.error


def test_tolerance_is_the_larger_of_relative_and_absolute():
    assert scoring.LENGTH_TOLERANCE_S == 0.05 and scoring.LENGTH_TOLERANCE_REL == 0.01
    length_tolerance, length_mismatch = scoring.length_tolerance, scoring.length_mismatch
    assert length_tolerance(RATE, RATE) == int(0.05 * RATE)  # 1 s: 50 ms beats 1 %
    assert length_tolerance(60 * RATE, RATE) == int(0.6 * RATE)  # 60 s: 1 % (600 ms) beats 50 ms
    tol = length_tolerance(N, RATE)
    assert length_mismatch(N, N + tol, RATE) is None and length_mismatch(N, N - tol, RATE) is None
    assert length_mismatch(N, N + tol + 1, RATE) and length_mismatch(N, N - tol - 1, RATE)
    why = length_mismatch(N, N // 2, RATE)
    assert f"ref {N} samples" in why and f"deg {N // 2} samples" in why and "1.500 s" in why


def test_tolerance_option():
    ref = _signal()
    deg = ref[: N - int(0.03 * RATE)]  # 30 ms short: fine by default
    assert _score(ref, deg).error is None
    strict = _score(ref, deg, length_tolerance_s=0.01)  # 10 ms (1 % of 1.5 s is 15 ms)
    assert strict.error and "10 ms" in strict.error
    lax = _score(ref, ref[: N // 2], length_tolerance_s=1.0)  # a user who asks for it gets today's trim
    assert lax.error is None and any("lengths differ" in n for n in lax.notes)
    with pytest.raises(ValueError):
        _score(ref, deg, length_tolerance_s=float("nan"))
    with pytest.raises(ValueError):
        _score(ref, deg, max_lag_s=-1.0)


def test_channel_mismatch_is_noted_and_bad_shapes_refused():
    ref = _signal()
    res = _score(ref[None], np.stack([ref, ref]))
    assert res.error is None and any("channels differ: ref 1, deg 2" in n for n in res.notes)
    assert res.values["si_sdr"].value > 40
    with pytest.raises(ValueError, match="shape"):
        _score(ref[None, None], ref)


def test_runner_score_task_goes_through_the_same_check():
    from bench.pipeline.engine import score_task

    ref = _signal()
    out = score_task(ref[None], ref[None, : N // 2], RATE, ["si_sdr", "stoi"], ITEM, "xcorr")
    value, error, _, _ = out["values"]["si_sdr"]
    assert math.isnan(value) and "length mismatch" in error
    assert "stoi" in out["skipped"]
