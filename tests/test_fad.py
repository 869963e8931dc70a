"""FAD: the Fréchet distance against closed forms and scipy, its bootstrap CI, its failures, its embedders.

The embedders run on tiny random-init models built from small configs and saved with save_pretrained
(nothing is downloaded); the rates and the published models' layouts are kept.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics import fad
from bench.metrics.base import describe_model, get_metric, metric_fingerprint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sets(n_items: int, frames: int, dim: int, noise: float, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / math.sqrt(dim)  # correlated dimensions
    ref = [(rng.normal(size=(frames, dim)) + rng.normal(size=dim)) @ mix for _ in range(n_items)]
    eps = [rng.normal(size=(frames, dim)) for _ in range(n_items)]
    return ref, [r + noise * e for r, e in zip(ref, eps)]


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's (non-symmetric) matrix square root: an independent implementation."""
    from scipy import linalg

    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a.T), np.cov(b.T)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_closed_form_of_two_1d_gaussians():
    # (m1 - m2)^2 + (s1 - s2)^2 for N(m1, s1^2) and N(m2, s2^2)
    for m1, s1, m2, s2 in [(0.0, 1.0, 0.0, 1.0), (1.0, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0)]:
        got = fad.frechet_distance(np.array([m1]), np.array([[s1 ** 2]]), np.array([m2]), np.array([[s2 ** 2]]))
        assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12, abs=1e-12)
    # independent dimensions add up
    mu1, mu2, v1, v2 = np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 4.0]), np.array([4.0, 1.0])
    got = fad.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(1.0 + (1 - 2) ** 2 + (2 - 1) ** 2, rel=1e-12)


def test_matches_scipy_and_is_symmetric():
    ref, deg = _sets(8, 40, 12, 0.7)
    a, b = np.concatenate(ref), np.concatenate(deg)
    got = fad.fad_of_sets(ref, deg, n_boot=0).value
    assert got == pytest.approx(_scipy_fd(a, b), rel=1e-9)
    assert fad.fad_of_sets(deg, ref, n_boot=0).value == pytest.approx(got, rel=1e-10)


def test_frame_space_form_equals_the_covariance_form():
    # 6 items x 3 frames of 32 dims: rank-deficient, computed in the frames' space; the covariance
    # form on the same pooled frames (np.cov) must agree
    ref, deg = _sets(6, 3, 32, 0.5, seed=3)
    v = fad.fad_of_sets(ref, deg, n_boot=0)
    a, b = np.concatenate(ref), np.concatenate(deg)
    assert v.value == pytest.approx(fad.frechet_distance(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T)), rel=1e-6)
    assert v.extra["rank_deficient"] and "rank-deficient" in v.extra["note"]
    assert v.extra["n_frames_ref"] == 18 and v.extra["dim"] == 32
    # items with many frames keep a scatter matrix instead: same value as pooling the frames
    ref2, deg2 = _sets(5, 40, 8, 0.5, seed=4)
    pooled = fad.frechet_distance(np.concatenate(ref2).mean(0), np.cov(np.concatenate(ref2).T),
                                  np.concatenate(deg2).mean(0), np.cov(np.concatenate(deg2).T))
    assert fad.fad_of_sets(ref2, deg2, n_boot=0).value == pytest.approx(pooled, rel=1e-10)
    assert not fad.fad_of_sets(ref2, deg2, n_boot=0).extra["rank_deficient"]


@pytest.mark.parametrize("frames,dim", [(50, 16), (2, 32)])
def test_identical_sets_are_zero(frames, dim):
    ref, _ = _sets(10, frames, dim, 0.0)
    v = fad.fad_of_sets(ref, [r.copy() for r in ref], n_boot=50)
    assert v.ok and abs(v.value) < 1e-6
    assert abs(v.extra["ci_low"]) < 1e-6 and abs(v.extra["ci_high"]) < 1e-6


def test_grows_with_the_noise_added():
    values = [fad.fad_of_sets(*_sets(12, 30, 16, noise, seed=1), n_boot=0).value for noise in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert values[0] < 1e-6
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[-1] > 10 * values[2]


def test_bootstrap_ci_contains_the_estimate_and_is_reproducible():
    for noise, frames in [(0.2, 30), (1.0, 30), (0.5, 1)]:
        ref, deg = _sets(15, frames, 8, noise, seed=2)
        v = fad.fad_of_sets(ref, deg, n_boot=200, seed=0)
        lo, hi = v.extra["ci_low"], v.extra["ci_high"]
        assert 0 <= lo <= v.value <= hi and hi > lo, (noise, v.value, lo, hi)
        # the resamples are re-centred on the estimate (FAD's small-set bias shifts them up)
        shift = v.value - v.extra["bootstrap_median"]
        assert hi == pytest.approx(v.extra["ci_raw_high"] + shift)
        assert lo == pytest.approx(max(v.extra["ci_raw_low"] + shift, 0.0))
        again = fad.fad_of_sets(ref, deg, n_boot=200, seed=0)
        assert (again.value, again.extra["ci_low"], again.extra["ci_high"]) == (v.value, lo, hi)
    other = fad.fad_of_sets(ref, deg, n_boot=200, seed=1)
    assert other.value == v.value and other.extra["ci_high"] != v.extra["ci_high"]


def test_too_small_or_mismatched_sets_are_nan_with_a_reason():
    ref, deg = _sets(1, 20, 4, 0.5)
    v = fad.fad_of_sets(ref, deg)
    assert math.isnan(v.value) and "set too small" in v.error and "need at least 2" in v.error
    v = fad.fad_of_sets(*_sets(0, 20, 4, 0.5))
    assert math.isnan(v.value) and "0 item" in v.error
    ref, deg = _sets(3, 20, 4, 0.5)
    assert "same items" in fad.fad_of_sets(ref, deg[:2]).error
    assert "different dimensions" in fad.fad_of_sets(ref, [d[:, :3] for d in deg]).error
    assert "NaN" in fad.fad_of_sets(ref, [d * np.nan for d in deg]).error
    assert "[frames >= 1" in fad.fad_of_sets(ref, [d[:0] for d in deg]).error


def test_windows_cover_the_clip_in_equal_pieces():
    assert fad.windows(100, 480_000) == [(0, 100)]
    w = fad.windows(1_200_000, 480_000)
    assert len(w) == 3 and w[0][0] == 0 and w[-1][1] == 1_200_000
    assert all(b - a <= 480_000 for a, b in w) and all(w[k][1] == w[k + 1][0] for k in range(2))


# --- the embedders, on tiny random-init models ------------------------------------------------------

SMALL_ENCODEC = dict(num_filters=4, hidden_size=16, codebook_dim=16, num_lstm_layers=1, num_residual_layers=1)


def tiny_encodec(folder: Path, seed: int = 0) -> Path:
    """A random-init EnCodec 24 kHz with shrunk widths, saved with save_pretrained."""
    import transformers

    torch.manual_seed(seed)
    transformers.EncodecModel(transformers.EncodecConfig(**SMALL_ENCODEC)).save_pretrained(str(folder))
    return folder


def tiny_clap(folder: Path) -> Path:
    """A random-init CLAP (HTSAT audio tower at the published 48 kHz / 10 s / 64 mel bins), saved with its extractor."""
    import transformers

    torch.manual_seed(0)
    text = dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                max_position_embeddings=64)
    audio = dict(hidden_size=32, patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2],
                 window_size=8, spec_size=256, num_mel_bins=64, projection_dim=16)
    cfg = transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=16)
    transformers.ClapModel(cfg).save_pretrained(str(folder))
    transformers.ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(str(folder))
    return folder


def test_encodec_embedder_gives_latent_frames(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    folder = tiny_encodec(tmp_path / "encodec")
    monkeypatch.setenv("BENCH_FAD_ENCODEC_MODEL", str(folder))
    model = fad.load_embedder(fad.ENCODEC)
    assert model.sample_rate_hz == 24_000 and model.dim == 16
    x = np.random.default_rng(0).normal(size=24_000).astype(np.float32) * 0.1
    e = model.embed(x)
    assert e.shape == (75, 16) and np.isfinite(e).all()  # 75 frames per second at hop 320
    np.testing.assert_array_equal(model.embed(x), e)
    info = get_metric("fad_encodec").model_info()
    from bench.hub import weights_sha256

    assert info["weights_sha256"] == weights_sha256(folder) and info["model"] == str(folder)


def test_clap_embedder_gives_one_unit_vector_per_window(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    folder = tiny_clap(tmp_path / "clap")
    monkeypatch.setenv("BENCH_FAD_CLAP_MODEL", str(folder))
    model = fad.load_embedder(fad.CLAP)
    assert model.sample_rate_hz == 48_000 and model.dim == 16
    rng = np.random.default_rng(0)
    short = rng.normal(size=48_000).astype(np.float32) * 0.1
    long = rng.normal(size=48_000 * 25).astype(np.float32) * 0.1  # 25 s: three windows of 8.3 s, no random crop
    e_short, e_long = model.embed(short), model.embed(long)
    assert e_short.shape == (1, 16) and e_long.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(e_long, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.embed(long), e_long)


def test_missing_weights_are_named_and_change_the_fingerprint(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    spec = get_metric("fad_encodec")
    assert spec.set_level and not spec.default and not spec.higher_is_better
    assert "EnCodec" in spec.display_name
    monkeypatch.setenv("BENCH_FAD_ENCODEC_MODEL", str(tmp_path / "nowhere"))
    info = describe_model(spec)
    assert "does not exist" in info["error"] and "bench weights fetch facebook/encodec_24khz" in info["error"]
    missing_fp = metric_fingerprint(spec)
    with pytest.raises(Exception, match="does not exist"):
        fad.load_embedder(fad.ENCODEC)
    monkeypatch.setenv("BENCH_FAD_ENCODEC_MODEL", str(tiny_encodec(tmp_path / "a")))
    fp_a = metric_fingerprint(spec)
    monkeypatch.setenv("BENCH_FAD_ENCODEC_MODEL", str(tiny_encodec(tmp_path / "b", seed=1)))
    assert len({missing_fp, fp_a, metric_fingerprint(spec)}) == 3  # other weights are another metric


def test_per_item_scoring_skips_set_level_metrics():
    from bench.pipeline.scoring import score_pair, score_pairs

    specs = [get_metric("si_sdr"), get_metric("fad_encodec")]
    x = np.random.default_rng(0).normal(size=(1, 16_000)).astype(np.float32) * 0.1
    res = score_pair(x, x * 0.5, 16_000, specs)
    assert list(res.values) == ["si_sdr"] and "set-level" in res.skipped["fad_encodec"].reason
    (batched,) = score_pairs(x, [x * 0.5], 16_000, specs)
    assert list(batched.values) == ["si_sdr"] and "fad_encodec" in batched.skipped
