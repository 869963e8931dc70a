"""f0_rmse and vuv_error (pYIN pitch tracks, bench/metrics/f0.py) on signals with known answers.

Harmonic tones and glides whose pitch ratio is set by construction (so the cents are known), silence and
noise for the voicing error, the NaN-with-reason cases, batching through ``bench.metrics.base.compute`` and
the shared per-clip track cache. The generic properties of tests/test_metrics_properties.py (identity is
best, noise worsens, symmetry) are checked here on real speech, since a pitch tracker cannot follow the
synthetic signal of that file (skipped when ../shared is absent).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from bench.datasets.base import Item
from bench.metrics import f0 as f0_module
from bench.metrics.base import compute, get_metric
from shared_paths import SHARED_AUDIO

pytestmark = pytest.mark.skipif(find_spec("librosa") is None, reason="the [pitch] extra (librosa) is not installed")

RATE = 16000
REAL_SPEECH = SHARED_AUDIO / "fixtures" / "speech-cmu-arctic" / "arctic_a0010.wav"
TOL_CENTS = 5.0  # half of pYIN's 10-cent pitch bin


def tone(f0_hz, duration_s: float = 1.0, harmonics: int = 10) -> np.ndarray:
    """A harmonic tone (1/h amplitudes) whose F0 is ``f0_hz``: a number or one value per sample."""
    n = int(duration_s * RATE)
    freq = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    out = sum(np.sin(h * phase) / h for h in range(1, harmonics + 1) if h * freq.max() < 0.45 * RATE)
    return (0.3 * out).astype(np.float32)


def glide(start_hz: float, end_hz: float, cents: float = 0.0, duration_s: float = 1.0) -> np.ndarray:
    """A tone sweeping linearly from start_hz to end_hz, transposed by ``cents``."""
    freq = np.linspace(start_hz, end_hz, int(duration_s * RATE)) * 2 ** (cents / 1200)
    return tone(freq, duration_s)


def noise(duration_s: float = 1.0, std: float = 0.1, seed: int = 0) -> np.ndarray:
    return (std * np.random.default_rng(seed).standard_normal(int(duration_s * RATE))).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.shape)
    n *= math.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))
    return (x + n).astype(np.float32)


def _t(*signals: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(signals))


def score(name: str, preds: np.ndarray, target: np.ndarray, domain: str = "speech"):
    item = Item(id="synthetic", path="", domain=domain)
    return compute(get_metric(name), _t(preds), _t(target), sample_rate_hz=RATE, items=[item])[0]


def both(preds: np.ndarray, target: np.ndarray, domain: str = "speech") -> tuple:
    return score("f0_rmse", preds, target, domain), score("vuv_error", preds, target, domain)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_specs():
    for name, unit, valid in (("f0_rmse", "cents", (0.0, math.inf)), ("vuv_error", "fraction", (0.0, 1.0))):
        spec = get_metric(name)
        assert spec.unit == unit and spec.valid_range == valid and not spec.higher_is_better
        assert spec.sample_rate_hz == RATE and spec.needs_reference and spec.domains == ("speech", "music")
        assert spec.requires == ("librosa",) and spec.min_duration_s == pytest.approx(0.064)


def test_identical_inputs_score_zero():
    for x in (tone(220.0), glide(150.0, 300.0)):
        rmse, vuv = both(x, x)
        assert rmse.ok and vuv.ok, (rmse.error, vuv.error)
        assert rmse.value == 0.0 and vuv.value == 0.0
        assert rmse.extra["n_voiced_both"] == rmse.extra["n_frames"] == 1 + len(x) // 160


@pytest.mark.parametrize("domain, f0_hz", [("speech", 220.0), ("speech", 120.0), ("music", 440.0)])
def test_fifty_cent_shift(domain, f0_hz):
    rmse, vuv = both(tone(f0_hz * 2 ** (50 / 1200)), tone(f0_hz), domain)
    assert rmse.ok, rmse.error
    assert rmse.value == pytest.approx(50.0, abs=TOL_CENTS)
    assert rmse.extra["f0_mean_cents"] == pytest.approx(50.0, abs=TOL_CENTS)  # preds is the sharp one
    assert vuv.value == 0.0 and rmse.extra["domain"] == domain


def test_glide_shifted_by_100_cents():
    rmse, vuv = both(glide(150.0, 300.0, cents=100.0), glide(150.0, 300.0))
    assert rmse.ok, rmse.error
    assert rmse.value == pytest.approx(100.0, abs=TOL_CENTS)
    assert vuv.value < 0.03


def test_octave_error_counts_1200_cents():
    rmse = score("f0_rmse", tone(440.0), tone(220.0))
    assert rmse.value == pytest.approx(1200.0, abs=TOL_CENTS)


def test_silent_reconstruction_of_a_tone():
    x = tone(220.0)
    rmse, vuv = both(np.zeros_like(x), x)
    assert vuv.ok and vuv.value == 1.0
    assert vuv.extra["n_voiced_ref"] == vuv.extra["n_frames"] and vuv.extra["n_voiced_pred"] == 0
    assert math.isnan(rmse.value) and "no frame voiced in both" in rmse.error
    assert rmse.extra["n_voiced_pred"] == 0  # the counts stay with the failure


def test_noise_instead_of_a_tone_is_all_voicing_errors():
    rmse, vuv = both(noise(), tone(220.0))
    assert vuv.ok and vuv.value > 0.9
    assert math.isnan(rmse.value) or rmse.extra["n_voiced_both"] < 0.1 * rmse.extra["n_frames"]


def test_unvoiced_reference_fails_f0_rmse_but_not_vuv_error():
    rmse, vuv = both(tone(220.0), noise())
    assert math.isnan(rmse.value) and "reference voiced in 0" in rmse.error
    assert vuv.ok and vuv.value > 0.9


def test_half_silenced_prediction():
    x = tone(220.0)
    half = x.copy()
    half[len(x) // 2:] = 0.0
    rmse, vuv = both(half, x)
    assert vuv.value == pytest.approx(0.5, abs=0.05)
    assert rmse.ok and rmse.value < TOL_CENTS  # where both are voiced the pitch is the same
    assert rmse.extra["n_voiced_both"] == pytest.approx(rmse.extra["n_frames"] / 2, abs=5)


def test_symmetric_in_preds_and_target():
    a, b = glide(150.0, 300.0, cents=30.0), add_noise(glide(150.0, 300.0), 10.0)
    for name in ("f0_rmse", "vuv_error"):
        assert score(name, a, b).value == score(name, b, a).value


def test_music_range_reaches_beyond_speech():
    for f0_hz in (40.0, 1500.0):  # outside the speech range (50-600 Hz), inside the music range
        track = f0_module.track_pitch(tone(f0_hz).astype(np.float64), "music")
        assert track.voiced.mean() > 0.9
        cents = np.abs(1200 * np.log2(track.f0_hz[track.voiced] / f0_hz))
        assert np.median(cents) <= TOL_CENTS and cents.max() <= 2 * TOL_CENTS + 2, (f0_hz, cents.max())


def test_unscorable_items_are_nan_with_reason():
    x = tone(220.0)
    short = x[:1000]  # < 1024 samples: shorter than one analysis frame
    bad = x.copy()
    bad[100] = np.nan
    for name in ("f0_rmse", "vuv_error"):
        cases = {"silent": (x, np.zeros_like(x)), "too short": (short, short),
                 "NaN/Inf": (bad, x)}
        for reason, (p, t) in cases.items():
            v = score(name, p, t)
            assert math.isnan(v.value) and reason in v.error, (name, reason, v)
        general = score(name, x, x, domain="general")
        assert math.isnan(general.value) and "speech and music only" in general.error
        wrong_rate = compute(get_metric(name), _t(x), _t(x), sample_rate_hz=22050)[0]
        assert math.isnan(wrong_rate.value) and "16000 Hz" in wrong_rate.error


def test_batch_equals_single_calls():
    x, y = tone(220.0), tone(220.0 * 2 ** (50 / 1200))
    z = x.copy()
    z[5] = np.inf
    items = [Item(id="a", path="", domain="speech"), Item(id="b", path="", domain="music"),
             Item(id="c", path="", domain="speech")]
    for name in ("f0_rmse", "vuv_error"):
        batch = compute(get_metric(name), _t(y, x, z), _t(x, y, x), sample_rate_hz=RATE, items=items)
        singles = [score(name, y, x, "speech"), score(name, x, y, "music")]
        for b, s in zip(batch[:2], singles):
            assert b.ok and s.ok and b.value == s.value and b.extra == s.extra
            assert b.compute_s is not None and b.compute_s > 0
        assert math.isnan(batch[2].value) and "NaN/Inf" in batch[2].error
    assert batch[1].extra["domain"] == "music"


def test_domain_option_overrides_items():
    x = tone(220.0)
    v = compute(get_metric("f0_rmse"), _t(x), _t(x), sample_rate_hz=RATE, domain="music",
                items=[Item(id="a", path="", domain="speech")])[0]
    assert v.ok and v.extra["domain"] == "music"
    default = compute(get_metric("f0_rmse"), _t(x), _t(x), sample_rate_hz=RATE)[0]
    assert default.extra["domain"] == "speech"


def test_one_tracking_pass_per_clip(monkeypatch):
    calls: list[int] = []
    real = f0_module._pyin

    def counting(audio, pitch_range):
        calls.append(len(audio))
        return real(audio, pitch_range)

    monkeypatch.setattr(f0_module, "_CACHE", OrderedDict())
    monkeypatch.setattr(f0_module, "_pyin", counting)
    ref, deg1, deg2 = tone(180.0), tone(181.0), tone(182.0)
    score("f0_rmse", deg1, ref)
    score("vuv_error", deg1, ref)  # both tracks cached: no new pass
    assert len(calls) == 2
    score("f0_rmse", deg2, ref)  # a second reconstruction of the same reference: one new pass
    assert len(calls) == 3
    score("f0_rmse", deg2, ref, domain="music")  # other settings, other tracks
    assert len(calls) == 5


@pytest.fixture(scope="module")
def real_speech() -> np.ndarray:
    if not REAL_SPEECH.exists():
        pytest.skip(f"{REAL_SPEECH} not present")
    from bench.audio import load_audio, resample

    audio = load_audio(REAL_SPEECH)
    x = resample(audio.samples.mean(axis=0), audio.sample_rate_hz, RATE).astype(np.float32)
    return x[:int(2.5 * RATE)]  # 2.5 s: enough voiced frames, less tracking time


def test_real_speech_identity_is_best_and_noise_worsens(real_speech):
    x = real_speech
    rmse0, vuv0 = both(x, x)
    assert rmse0.value == 0.0 and vuv0.value == 0.0 and rmse0.extra["n_voiced_ref"] > 0.3 * rmse0.extra["n_frames"]
    noisy = [both(add_noise(x, snr), x) for snr in (30.0, 20.0, 10.0, 0.0)]
    rmse = [r.value for r, _ in noisy]
    vuv = [v.value for _, v in noisy]
    assert all(r > 0 for r in rmse) and rmse == sorted(rmse), rmse  # F0 error grows with the noise
    assert all(0 <= v <= 1 for v in vuv) and vuv[-1] == max(vuv) > 0.1, vuv  # voicing: worst at 0 dB
    lowpassed = np.fft.irfft(np.fft.rfft(x) * (np.fft.rfftfreq(len(x), 1 / RATE) <= 3000.0), len(x))
    rmse_lp, vuv_lp = both(add_noise(lowpassed.astype(np.float32), 15.0), x)
    swapped = both(x, add_noise(lowpassed.astype(np.float32), 15.0))
    assert (rmse_lp.value, vuv_lp.value) == (swapped[0].value, swapped[1].value)
