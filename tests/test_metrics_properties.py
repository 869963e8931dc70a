"""Properties every registered metric must have, checked generically over the METRICS registry.

* identity gives the best score (no noisy version scores better);
* the score worsens strictly as white noise rises (SNR 30, 20, 10, 0 dB);
* swapping preds and target: symmetric metrics (declared below) give the same value, the others a
  different one (so a swapped call is caught);
* unscorable items (non-finite samples, silence, too short) give NaN with a reason, or, where the metric
  is defined for them (declared below), a finite value inside the spec's valid range;
* batched calls give the same per-item values as single calls.

The test signal is a deterministic synthetic speech-like signal (voiced syllables with formants), so the
file needs no data. Metrics that need a transcript are skipped here (their own tests use real speech).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.metrics.base import MetricSpec, compute
from bench.registry import METRICS
from shared_paths import SHARED_AUDIO

# --- declared properties of the metrics (other metrics get the generic checks) -------------------------
SYMMETRIC = {"si_sdr", "mel_distance", "stft_distance", "lsd", "gdd", "ip_distance", "iaf_distance"}
# a silent (all-zero) target makes these undefined -> NaN + reason
SILENT_TARGET_FAILS = {"si_sdr", "pesq_wb", "pesq_nb", "stoi", "estoi", "gdd", "ip_distance", "iaf_distance"}
# ... while these are defined for it and must return a finite value
SILENT_TARGET_DEFINED = {"mel_distance", "stft_distance", "lsd"}
# metrics that are defined on very short clips (0.02 s); all others must refuse them with a reason
SHORT_CLIP_DEFINED = {"si_sdr"}
SLOW_BACKENDS = ("visqol", "speechmos", "onnxruntime")
# pitch trackers cannot follow speech_like's F0 glides (~120 semitones/s) and vuv_error need not rise at
# every noise step: their properties are checked on pitched signals in tests/test_metrics_f0.py
OWN_PROPERTY_TESTS = {"f0_rmse", "vuv_error"}

SNRS_DB = (30.0, 20.0, 10.0, 0.0)


def speech_like(rate_hz: int, duration_s: float = 1.6, seed: int = 0) -> np.ndarray:
    """Voiced syllables (glottal harmonics shaped by three formants), 4 per second, with pauses."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    out = np.zeros(n)
    vowels = np.array([[700, 1200, 2600], [300, 2300, 3000], [500, 900, 2400], [400, 1900, 2700]], float)
    for k, start in enumerate(np.arange(0.15, duration_s - 0.3, 0.25)):
        seg = (t >= start) & (t < start + 0.2)
        tt = t[seg] - start
        f0 = 110.0 + 40.0 * np.sin(2 * np.pi * (0.7 * k + 3.0 * tt))
        phase = 2 * np.pi * np.cumsum(f0) / rate_hz
        formants = vowels[rng.integers(len(vowels))]
        syllable = np.zeros(seg.sum())
        for h in range(1, 40):
            fh = h * f0.mean()
            if fh > 0.45 * rate_hz:
                break
            gain = np.exp(-0.5 * ((fh - formants) / 120.0) ** 2).sum() + 0.05
            syllable += gain / math.sqrt(h) * np.sin(h * phase)
        out[seg] += np.sin(np.pi * tt / 0.2) ** 2 * syllable
    out += 0.002 * rng.standard_normal(n)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    noise *= math.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def lowpass(x: np.ndarray, rate_hz: int, cutoff_hz: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / rate_hz) > cutoff_hz] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))[None]


def _rate(spec: MetricSpec) -> int:
    return spec.sample_rate_hz or 16000


def _params():
    out = []
    for name, spec in METRICS.items():
        marks = []
        if spec.needs_transcript:
            marks.append(pytest.mark.skip(reason=f"{name} needs a transcript; covered by its own tests"))
        elif spec.set_level:
            marks.append(pytest.mark.skip(reason=f"{name} is set-level (one value per set): tests/test_fad.py"))
        elif spec.model_info is not None:
            marks.append(pytest.mark.skip(reason=f"{name} is model-backed (no weights here): its own tests run it "
                                                 "on random-init models"))
        elif name in OWN_PROPERTY_TESTS:
            marks.append(pytest.mark.skip(reason=f"{name}: properties covered by its own test file"))
        elif any(any(b in r for b in SLOW_BACKENDS) for r in spec.requires):
            marks.append(pytest.mark.slow)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


_VALUES: dict[str, dict] = {}


def score(spec: MetricSpec, preds: np.ndarray, target: np.ndarray, domain: str = "speech"):
    from bench.datasets.base import Item

    item = Item(id="synthetic", path="", domain=domain)
    return compute(spec, _t(preds), _t(target), sample_rate_hz=_rate(spec), items=[item])[0]


REAL_SPEECH = (SHARED_AUDIO / "fixtures" / "speech-cmu-arctic"
               / "arctic_a0010.wav")


def signal_for(spec: MetricSpec) -> np.ndarray:
    """Synthetic speech-like audio; real speech for non-intrusive (learned) metrics, which rate a synthetic
    signal meaninglessly (skip when the shared fixture is absent)."""
    rate = _rate(spec)
    if spec.needs_reference:
        return speech_like(rate)
    if not REAL_SPEECH.exists():
        pytest.skip(f"{spec.name} is non-intrusive and needs real speech ({REAL_SPEECH} absent)")
    from bench.audio import load_audio, resample

    audio = load_audio(REAL_SPEECH)
    return resample(audio.samples.mean(axis=0), audio.sample_rate_hz, rate)


def curve(name: str) -> dict:
    """Identity and noisy scores of one metric, computed once per test session."""
    if name not in _VALUES:
        spec = METRICS.get(name)
        x = signal_for(spec)
        identity = score(spec, x, x)
        noisy = [score(spec, add_noise(x, snr), x) for snr in SNRS_DB]
        _VALUES[name] = {"identity": identity, "noisy": noisy}
    return _VALUES[name]


def _better(spec: MetricSpec, a: float, b: float) -> bool:
    return a > b if spec.higher_is_better else a < b


def _in_range(spec: MetricSpec, v: float) -> bool:
    lo, hi = spec.valid_range
    return lo - 1e-9 <= v <= hi + 1e-9


@pytest.mark.parametrize("name", _params())
def test_identity_is_best_and_in_range(name):
    spec = METRICS.get(name)
    c = curve(name)
    ident = c["identity"]
    assert ident.ok, ident.error
    assert _in_range(spec, ident.value), ident.value
    for snr, v in zip(SNRS_DB, c["noisy"]):
        assert v.ok, f"{name} at {snr} dB SNR: {v.error}"
        assert _in_range(spec, v.value), (snr, v.value)
        assert _better(spec, ident.value, v.value), f"{name}: noisy ({snr} dB) {v.value} not worse than identity {ident.value}"


@pytest.mark.parametrize("name", _params())
def test_worsens_monotonically_with_noise(name):
    spec = METRICS.get(name)
    values = [v.value for v in curve(name)["noisy"]]
    for (snr_a, a), (snr_b, b) in zip(zip(SNRS_DB, values), zip(SNRS_DB[1:], values[1:])):
        assert _better(spec, a, b), f"{name}: {snr_a} dB -> {a}, {snr_b} dB -> {b} (should worsen)"


@pytest.mark.parametrize("name", _params())
def test_swapping_preds_and_target(name):
    spec = METRICS.get(name)
    if not spec.needs_reference:
        pytest.skip(f"{name} is non-intrusive: it has no target to swap")
    rate = _rate(spec)
    x = speech_like(rate)
    y = add_noise(lowpass(x, rate, 3000.0), 15.0)  # band-limited and noisy: an asymmetric pair
    forward, backward = score(spec, y, x), score(spec, x, y)
    assert forward.ok and backward.ok, (forward.error, backward.error)
    if name in SYMMETRIC:
        assert forward.value == pytest.approx(backward.value, rel=1e-5, abs=1e-9)
    else:
        assert abs(forward.value - backward.value) > 1e-3 * max(1.0, abs(forward.value)), \
            f"{name}: swapping preds/target gave the same value {forward.value}"


@pytest.mark.parametrize("name", _params())
def test_non_finite_samples_give_nan_with_reason(name):
    spec = METRICS.get(name)
    x = speech_like(_rate(spec), duration_s=1.5)
    bad = x.copy()
    bad[100] = np.nan
    cases = ((bad, x), (x, bad)) if spec.needs_reference else ((bad, x),)  # non-intrusive: preds only
    for preds, target in cases:
        v = score(spec, preds, target)
        assert math.isnan(v.value) and v.error, (name, v)


@pytest.mark.parametrize("name", _params())
def test_silent_target(name):
    spec = METRICS.get(name)
    if not spec.needs_reference:
        pytest.skip(f"{name} is non-intrusive")
    x = speech_like(_rate(spec), duration_s=1.5)
    v = score(spec, x, np.zeros_like(x))
    if name in SILENT_TARGET_FAILS:
        assert math.isnan(v.value) and v.error and ("silent" in v.error or "zeros" in v.error), v
    elif name in SILENT_TARGET_DEFINED:
        assert v.ok and _in_range(spec, v.value), v
    else:
        assert (math.isnan(v.value) and v.error) or (v.ok and _in_range(spec, v.value)), v


@pytest.mark.parametrize("name", _params())
def test_too_short_clip(name):
    spec = METRICS.get(name)
    rate = _rate(spec)
    x = speech_like(rate, duration_s=0.5)[int(0.15 * rate):int(0.17 * rate)]  # 20 ms of a syllable
    v = score(spec, add_noise(x, 20.0), x)
    if name in SHORT_CLIP_DEFINED:
        assert v.ok, v
    else:
        assert math.isnan(v.value) and v.error, f"{name} scored a 20 ms clip: {v}"


@pytest.mark.parametrize("name", _params())
def test_batched_equals_single(name):
    spec = METRICS.get(name)
    if not spec.batched:
        pytest.skip(f"{name} is not batched")
    if any(any(b in r for b in SLOW_BACKENDS) for r in spec.requires):
        pytest.skip(f"{name}: model-based backend, batching is covered by its own tests (slow here)")
    rate = _rate(spec)
    x = speech_like(rate, duration_s=1.0)
    y = add_noise(x, 10.0)
    z = x.copy()
    z[5] = np.inf
    preds = torch.from_numpy(np.stack([y, x, z]))  # the third item is unscorable (Inf sample)
    target = torch.from_numpy(np.stack([x, x, x]))
    from bench.datasets.base import Item

    items = [Item(id=f"synthetic{i}", path="", domain="speech") for i in range(3)]
    batch = compute(spec, preds, target, sample_rate_hz=rate, items=items)
    single = [score(spec, y, x), score(spec, x, x)]
    for b, s in zip(batch[:2], single):
        assert b.ok and s.ok, (b.error, s.error)
        assert b.value == pytest.approx(s.value, rel=1e-5, abs=1e-7)
    assert math.isnan(batch[2].value) and batch[2].error


# --- specifics of the torch modules used in training ---------------------------------------------------
def test_slaney_mel_scale_anchors():
    from bench.metrics.mel import hz_to_mel_slaney, mel_to_hz_slaney, slaney_mel_filterbank

    assert hz_to_mel_slaney(1000.0) == pytest.approx(15.0)
    assert hz_to_mel_slaney(6400.0) == pytest.approx(42.0)  # 27 log steps of 6.4**(1/27) above 1 kHz
    assert hz_to_mel_slaney(200.0) == pytest.approx(3.0)  # linear part: 200/3 Hz per mel
    f = np.array([0.0, 300.0, 999.0, 1000.0, 5000.0, 22050.0])
    assert mel_to_hz_slaney(hz_to_mel_slaney(f)) == pytest.approx(f)
    # Slaney normalisation: every triangle has unit area in Hz (checked on a fine FFT grid)
    fb = slaney_mel_filterbank(16000, 8192, 40)
    areas = fb.sum(axis=1) * 16000 / 8192
    assert areas == pytest.approx(np.ones(40), rel=2e-2)


def test_mel_module_is_differentiable_and_handles_channels():
    from bench.metrics.mel import MelDistanceConfig, MultiScaleMelDistance

    rate = 16000
    x = torch.from_numpy(speech_like(rate, duration_s=0.6))
    target = torch.stack([x, x]).unsqueeze(0).repeat(2, 1, 1)  # [B=2, C=2, T]
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    recon = (target + 0.01 * noise).requires_grad_(True)
    loss_fn = MultiScaleMelDistance(MelDistanceConfig.dac(), sample_rate_hz=rate)
    per_item = loss_fn(recon, target)
    assert per_item.shape == (2,)
    per_item.mean().backward()
    assert torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0
    terms = loss_fn.per_scale(recon.detach(), target)
    assert terms.shape == (7, 2) and torch.allclose(terms.sum(0), per_item.detach())


def test_stft_distance_matches_independent_numpy_implementation():
    """Frame, window and FFT by hand in numpy (float64) and compare with the torch metric."""
    from bench.metrics.stft import stft_distance

    rate = 16000
    x = speech_like(rate, duration_s=0.8)
    y = add_noise(x, 10.0)

    def mags(sig: np.ndarray, w: int) -> np.ndarray:
        hop = w // 4
        padded = np.pad(sig.astype(np.float64), w // 2, mode="reflect")
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(w) / w)  # periodic Hann
        frames = 1 + (len(padded) - w) // hop
        idx = np.arange(w)[None, :] + hop * np.arange(frames)[:, None]
        return np.abs(np.fft.rfft(padded[idx] * window, axis=-1))

    expected = 0.0
    for w in (2048, 512):
        mp, mt = mags(y, w), mags(x, w)
        log_p = np.log10(np.maximum(mp, 1e-5) ** 2)
        log_t = np.log10(np.maximum(mt, 1e-5) ** 2)
        expected += np.abs(log_p - log_t).mean() + np.abs(mp - mt).mean()
    got = stft_distance(_t(y), _t(x), sample_rate_hz=rate)[0].value
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["mel_distance", "stft_distance", "lsd", "gdd", "ip_distance", "iaf_distance"])
def test_long_items_in_stft_blocks_equal_one_pass(name, monkeypatch):
    """Long items are processed in bounded STFT blocks; the result must not depend on the block size."""
    import bench.metrics._spectral as spectral

    spec = METRICS.get(name)
    x = speech_like(16000, duration_s=1.2)
    y = add_noise(x, 10.0)
    one_pass = score(spec, y, x).value
    monkeypatch.setattr(spectral, "STFT_BLOCK_ELEMENTS", 3000)  # forces many blocks at every scale
    blocked = score(spec, y, x).value
    assert blocked == pytest.approx(one_pass, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mel_and_stft_modules_on_cuda_match_cpu():
    from bench.metrics.mel import MultiScaleMelDistance
    from bench.metrics.stft import MultiScaleSTFTDistance

    x = torch.from_numpy(speech_like(24000, duration_s=1.0))
    target = torch.stack([x, x])
    recon = target + 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    mel = MultiScaleMelDistance(sample_rate_hz=24000)
    for module in (mel, MultiScaleSTFTDistance()):
        cpu = module(recon, target)
        gpu = module(recon.cuda(), target.cuda())
        assert gpu.device.type == "cuda"
        assert torch.allclose(gpu.cpu(), cpu, rtol=1e-4)
