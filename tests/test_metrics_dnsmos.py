"""DNSMOS P.835 (dnsmos_sig / dnsmos_bak / dnsmos_ovrl) on real speech from ../shared/audio."""

from __future__ import annotations

import sys
import types
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from bench.datasets.base import Item
from bench.metrics.base import compute, get_metric
from shared_paths import SHARED_DIR as SHARED

LIBRIVOX = SHARED / "audio" / "fixtures" / "speech-librivox-with-transcripts"

pytestmark = [
    pytest.mark.skipif(not LIBRIVOX.is_dir(), reason=f"{LIBRIVOX} not present"),
    pytest.mark.skipif(find_spec("speechmos") is None or find_spec("onnxruntime") is None,
                       reason="the [dnsmos] extra (speechmos, onnxruntime) is not installed"),
]


def speech(name: str = "sense_and_sensibility_01_austen_64kb-0870.wav") -> np.ndarray:
    from bench.audio import load_audio, to_channels

    audio = load_audio(LIBRIVOX / name)
    assert audio.sample_rate_hz == 16000
    return to_channels(audio.samples, 1)[0]


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-snr_db / 20)
    return np.clip(x + noise, -1, 1).astype(np.float32)


def test_specs():
    for name in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"):
        spec = get_metric(name)
        assert spec.sample_rate_hz == 16000 and spec.higher_is_better and not spec.needs_reference
        assert spec.domains == ("speech",) and spec.unit == "MOS"


def test_matches_speechmos_pipeline(monkeypatch):
    """Same windows, model and polynomials as speechmos's own DNSMOS class (its P.808 half stubbed out:
    it needs librosa, which is not a dependency, and we do not report P.808)."""
    from bench.metrics.dnsmos import dnsmos_scores, model_path

    if "librosa" not in sys.modules:
        try:
            import librosa  # noqa: F401
        except ImportError:
            monkeypatch.setitem(sys.modules, "librosa", types.ModuleType("librosa"))
    sm = pytest.importorskip("speechmos.dnsmos")
    p808 = model_path().parent / "model_v8.onnx"
    ref = sm.DNSMOS(str(model_path()), str(p808))
    monkeypatch.setattr(ref, "audio_melspec", lambda audio, **kw: np.zeros((900, 120), np.float32))
    # 2.6 s tiled to 10.4 s (2 windows) and 7.1 + 3 s untiled (2 windows, hop 1 s), clean and noisy
    a, b = speech(), speech("sense_and_sensibility_01_austen_64kb-0890.wav")
    for clip in (with_noise(a[:41600], 5.0), np.concatenate([a, b[:48000]])):
        expected = ref(clip, 16000, False)
        ours = dnsmos_scores(clip)
        assert ours["sig"] == pytest.approx(expected["sig_mos"], abs=1e-5)
        assert ours["bak"] == pytest.approx(expected["bak_mos"], abs=1e-5)
        assert ours["ovrl"] == pytest.approx(expected["ovrl_mos"], abs=1e-5)


def test_clean_beats_heavy_noise_and_monotonic():
    x = speech()[:80000]  # 5 s, tiled to 10 s: 2 windows per clip
    clips = [x] + [with_noise(x, snr) for snr in (20, 5, 0)]
    n = min(len(c) for c in clips)
    batch = torch.from_numpy(np.stack([c[:n] for c in clips]))
    items = [Item(id=f"snr{i}", path="x.wav", domain="speech") for i in range(len(clips))]
    ovrl = [v.value for v in compute(get_metric("dnsmos_ovrl"), batch, batch, items=items)]
    bak = compute(get_metric("dnsmos_bak"), batch, batch, items=items)
    sig = compute(get_metric("dnsmos_sig"), batch, batch, items=items)
    print(f"DNSMOS OVRL clean / 20 / 5 / 0 dB: {ovrl}")
    assert all(np.isfinite(ovrl)) and all(1.0 <= v <= 5.0 for v in ovrl)
    assert all(a > b for a, b in zip(ovrl, ovrl[1:])), ovrl
    assert bak[0].value > bak[-1].value + 1.0
    # one inference feeds all three: extras agree with the sibling metrics
    assert sig[0].extra["ovrl"] == pytest.approx(ovrl[0]) and sig[0].extra["bak"] == pytest.approx(bak[0].value)


def test_unscorable_items_nan_with_reason():
    x = speech()[:80000]  # 5 s: tiled to 10 s, 2 windows
    batch = torch.from_numpy(np.stack([x, np.zeros_like(x), np.full_like(x, np.nan)]))
    short = torch.from_numpy(x[None, :8000].copy())
    vals = compute(get_metric("dnsmos_ovrl"), batch, batch)
    assert vals[0].ok
    assert np.isnan(vals[1].value) and "silent" in vals[1].error
    assert np.isnan(vals[2].value) and "NaN" in vals[2].error
    (v,) = compute(get_metric("dnsmos_sig"), short, short)
    assert np.isnan(v.value) and "shorter" in v.error


def test_wrong_rate_is_an_error():
    from bench.metrics.dnsmos import dnsmos_ovrl

    x = torch.zeros(1, 48000)
    with pytest.raises(Exception, match="16000"):
        dnsmos_ovrl(x, x, sample_rate_hz=48000)
