"""``score_pairs``: several reconstructions of one reference scored at once, device metrics batched.

On the CPU ``score_pairs`` calls a device metric once per reconstruction by default (batching is no
faster there), so these tests pass ``batch_samples=WHOLE`` to put each group in one ``[B, T]`` call.

It must give what ``score_pair`` gives pair by pair: the same lags, notes, pair failures, skips and
values, in the order of the reconstructions. On the CPU the batched device metrics are bit-identical
(one torch thread, the same STFT blocks and the same order of every sum for a row whatever the
batch); CPU metrics (PESQ, STOI) run pair by pair either way, so they agree to their own run-to-run
noise (pystoi's ESTOI differs by ~1e-15 between two calls on the same pair).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from shared_paths import SHARED_AUDIO

from bench.metrics.base import MetricSpec, MetricValue, select_metrics
from bench.pipeline.scoring import score_pair, score_pairs
from bench.registry import METRICS

RATE = 16000
LAG = 40
WHOLE = 10**9  # batch_samples: every reconstruction of a group in one call


@dataclass(frozen=True)
class _Item:
    domain: str = "speech"
    transcript: str | None = None


ITEM = _Item()


def _speech_like(n: int, rate: int, seed: int = 0) -> np.ndarray:
    """Harmonic syllables under formant-like gains, four a second, with pauses and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    out = np.zeros(n)
    for k, start in enumerate(np.arange(0.1, n / rate - 0.25, 0.25)):
        seg = (t >= start) & (t < start + 0.2)
        tt = t[seg] - start
        f0 = 120.0 + 30.0 * np.sin(2 * np.pi * (0.5 * k + 2.0 * tt))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        formants = rng.choice([500.0, 900.0, 1500.0, 2400.0], size=2, replace=False)
        syllable = sum((np.exp(-0.5 * ((h * 120.0 - formants) / 150.0) ** 2).sum() + 0.05) / math.sqrt(h)
                       * np.sin(h * phase) for h in range(1, 30))
        out[seg] += np.sin(np.pi * tt / 0.2) ** 2 * syllable
    out += 0.002 * rng.standard_normal(n)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def _noisy(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    noise *= math.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def _lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / RATE) > cutoff_hz] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def _reconstructions(ref: np.ndarray) -> list[np.ndarray]:
    """Four of different quality: mild noise, a lowpass, a late noisy one (a lag), one cut short (fails)."""
    late = np.concatenate([np.zeros(LAG, np.float32), _noisy(ref, 12.0, 3)])
    return [_noisy(ref, 30.0, 1), _lowpass(ref, 2500.0), late, ref[: len(ref) // 2]]


def _same(a: MetricValue, b: MetricValue, rel: float) -> bool:
    if math.isnan(a.value) or math.isnan(b.value):
        return math.isnan(a.value) and math.isnan(b.value)
    return a.value == pytest.approx(b.value, rel=rel, abs=1e-12)


def _assert_same_results(single, batched, exact_on_device: bool) -> None:
    assert len(single) == len(batched)
    for k, (a, b) in enumerate(zip(single, batched)):
        assert (a.lag_samples, a.error, a.notes) == (b.lag_samples, b.error, b.notes), k
        assert list(a.values) == list(b.values) and a.skipped == b.skipped, k
        for name, va in a.values.items():
            vb = b.values[name]
            assert (va.error, va.extra) == (vb.error, vb.extra), (k, name)
            exact = exact_on_device and METRICS.get(name).on_device
            assert _same(va, vb, 0.0 if exact else 1e-5), (k, name, va.value, vb.value)


@pytest.fixture
def one_thread():
    """score_pair at one torch thread, as the scoring workers run it (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def metrics() -> list[MetricSpec]:
    chosen = select_metrics("default")
    assert {"si_sdr", "mel_distance", "stft_distance", "lsd", "gdd"} <= {m.name for m in chosen if m.on_device}
    return chosen


def test_batched_equals_pair_by_pair_on_cpu(metrics, one_thread):
    ref = _speech_like(2 * RATE, RATE)
    degs = _reconstructions(ref)
    single = [score_pair(ref, d, RATE, metrics, item=ITEM) for d in degs]
    batched = score_pairs(ref, degs, RATE, metrics, item=ITEM, device="cpu", batch_samples=WHOLE)
    _assert_same_results(single, batched, exact_on_device=True)
    assert [r.lag_samples for r in batched] == [0, 0, LAG, 0]
    assert batched[3].error and "length mismatch" in batched[3].error
    assert all(math.isnan(v.value) for v in batched[3].values.values())
    assert "lengths differ" in batched[2].notes[0]
    good = [r for r in batched if r.error is None]
    assert all(v.ok and v.compute_s > 0 for r in good for v in r.values.values())
    si_sdr = [r.values["si_sdr"].value for r in good]
    assert si_sdr[0] > 29 and 5 < si_sdr[2] < 15  # the lag was removed before scoring


def test_order_follows_degs_and_a_value_does_not_depend_on_its_batch(metrics):
    """Reversed input, reversed output; a reconstruction scored alone or among others: same bits."""
    ref = _speech_like(2 * RATE, RATE, seed=4)
    degs = _reconstructions(ref)
    device_metrics = [m for m in metrics if m.on_device]
    forward = score_pairs(ref, degs, RATE, device_metrics, item=ITEM, batch_samples=WHOLE)
    backward = score_pairs(ref, degs[::-1], RATE, device_metrics, item=ITEM, batch_samples=WHOLE)
    alone = [score_pairs(ref, [d], RATE, device_metrics, item=ITEM)[0] for d in degs]
    _assert_same_results(forward, backward[::-1], exact_on_device=True)
    _assert_same_results(forward, alone, exact_on_device=True)


def test_a_bad_reconstruction_fails_alone_and_skips_are_kept(one_thread):
    ref = _speech_like(RATE, RATE, seed=2)
    bad = _noisy(ref, 20.0, 5)
    bad[1000] = np.nan
    specs = [METRICS.get(n) for n in ("si_sdr", "lsd", "gdd", "pesq_wb")]
    music = _Item(domain="music")
    degs = [_noisy(ref, 25.0, 6), bad]
    single = [score_pair(ref, d, RATE, specs, item=music) for d in degs]
    batched = score_pairs(ref, degs, RATE, specs, item=music, batch_samples=WHOLE)
    _assert_same_results(single, batched, exact_on_device=True)
    assert batched[1].values["lsd"].error == "audio contains NaN/Inf samples"
    assert batched[0].values["lsd"].ok and "pesq_wb" in batched[0].skipped


def test_several_batches_per_group_give_the_same_values(metrics):
    """A group longer than one call allows is cut into calls; the values cannot change."""
    ref = _speech_like(RATE, RATE, seed=3)
    degs = [_noisy(ref, snr, 10 + k) for k, snr in enumerate((40.0, 25.0, 15.0, 5.0, 0.0))]
    device_metrics = [m for m in metrics if m.on_device]
    whole = score_pairs(ref, degs, RATE, device_metrics, item=ITEM, batch_samples=WHOLE)
    cut = score_pairs(ref, degs, RATE, device_metrics, item=ITEM, batch_samples=2 * RATE)  # two a call
    _assert_same_results(whole, cut, exact_on_device=True)
    one_each = score_pairs(ref, degs, RATE, device_metrics, item=ITEM)  # the CPU default: one a call
    _assert_same_results(whole, one_each, exact_on_device=True)
    assert len({r.values["mel_distance"].compute_s for r in one_each}) == len(degs)
    # a call's time is split over its rows: the rows of one call share a compute_s
    assert cut[0].values["mel_distance"].compute_s == cut[1].values["mel_distance"].compute_s


def test_long_items_cut_into_stft_blocks_are_cut_the_same_way_in_a_batch(monkeypatch, metrics, one_thread):
    """Blocks of frames are sized per pair of rows, so a batch accumulates each row's sums in the same order."""
    import bench.metrics._spectral as spectral

    monkeypatch.setattr(spectral, "STFT_BLOCK_ELEMENTS", 40_000)  # many blocks at every scale
    ref = _speech_like(RATE, RATE, seed=11)
    degs = [_noisy(ref, snr, 20 + k) for k, snr in enumerate((30.0, 10.0, 0.0))]
    device_metrics = [m for m in metrics if m.on_device]
    single = [score_pair(ref, d, RATE, device_metrics, item=ITEM) for d in degs]
    _assert_same_results(single, score_pairs(ref, degs, RATE, device_metrics, item=ITEM, batch_samples=WHOLE), True)


def test_align_report_and_none_group_by_the_scored_length(one_thread):
    ref = _speech_like(RATE, RATE, seed=7)
    degs = [_noisy(ref, 20.0, 8), _noisy(ref, 20.0, 9)[:-300], np.concatenate([np.zeros(LAG, np.float32), ref])]
    specs = [METRICS.get(n) for n in ("si_sdr", "stft_distance")]
    for align in ("report", "none"):
        single = [score_pair(ref, d, RATE, specs, item=ITEM, align=align) for d in degs]
        batched = score_pairs(ref, degs, RATE, specs, item=ITEM, align=align, batch_samples=WHOLE)
        _assert_same_results(single, batched, True)


def test_real_item_if_shared_audio_is_present(metrics, one_thread):
    from bench.audio import load_audio

    path = SHARED_AUDIO / "fixtures" / "speech-librispeech-ogg" / "198-209-0000.hq.ogg"
    if not path.exists():
        pytest.skip(f"{path} absent (shared audio not here)")
    audio = load_audio(path, duration_s=3.0)
    ref = audio.samples[0]
    degs = _reconstructions(ref)
    single = [score_pair(ref, d, audio.sample_rate_hz, metrics, item=ITEM) for d in degs]
    batched = score_pairs(ref, degs, audio.sample_rate_hz, metrics, item=ITEM, batch_samples=WHOLE)
    _assert_same_results(single, batched, True)


def test_unknown_device_is_refused():
    ref = _speech_like(RATE // 2, RATE)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            score_pairs(ref, [ref], RATE, [METRICS.get("si_sdr")], device="cuda")
    with pytest.raises(ValueError, match="alignment policy"):
        score_pairs(ref, [ref], RATE, [METRICS.get("si_sdr")], align="bogus")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(metrics):
    ref = _speech_like(2 * RATE, RATE, seed=5)
    degs = _reconstructions(ref)
    cpu = score_pairs(ref, degs, RATE, metrics, item=ITEM, device="cpu", batch_samples=WHOLE)
    cuda = score_pairs(ref, degs, RATE, metrics, item=ITEM, device="cuda")
    _assert_same_results(cpu, cuda, exact_on_device=False)
    alone = [score_pairs(ref, [d], RATE, metrics, item=ITEM, device="cuda")[0] for d in degs]
    _assert_same_results(cuda, alone, exact_on_device=False)
