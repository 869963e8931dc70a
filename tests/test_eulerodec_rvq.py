"""The complex RVQ: real-2H nearest neighbours, EMA schedule, dead-code restarts, statistics, decoding."""

from __future__ import annotations

import pytest
import torch

from bench.models.complex_rvq import ComplexResidualVQ


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _latent(b=4, t=16, h=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(b, t, h, generator=g), torch.randn(b, t, h, generator=g))


def test_decay_warms_up_from_098_to_0999():
    vq = ComplexResidualVQ(3, num_quantizers=2, codebook_size=16, decay_warmup_steps=10)
    assert vq.current_decay() == pytest.approx(0.98)
    vq.step.fill_(5)
    assert vq.current_decay() == pytest.approx(0.9895)
    vq.step.fill_(50)
    assert vq.current_decay() == pytest.approx(0.999)


def test_codes_in_range_and_decode_matches_forward_in_eval():
    torch.manual_seed(0)
    vq = ComplexResidualVQ(3, num_quantizers=4, codebook_size=32)
    z = _latent()
    vq.train()
    for _ in range(5):
        vq(z)
    vq.eval()
    zq, codes, commit = vq(z, n_quantizers=3)
    assert codes.shape == (4, 3, 16) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    assert zq.dtype == torch.complex64 and zq.shape == z.shape
    assert torch.allclose(vq.decode_codes(codes), zq, atol=1e-5)
    assert commit.item() > 0


def test_distance_is_the_complex_euclidean_distance():
    torch.manual_seed(0)
    vq = ComplexResidualVQ(2, num_quantizers=1, codebook_size=3)
    entries = torch.tensor([[1 + 0j, 0j], [1j, 0j], [0j, -1 + 0j]], dtype=torch.complex64)
    vq.codebooks[0] = torch.view_as_real(entries).reshape(3, 4)
    vq.eval()
    z = torch.tensor([[[0.1 + 0.9j, 0.1 + 0j], [0.9 + 0j, 0j], [0.1j, -0.8 + 0j]]], dtype=torch.complex64)
    _, codes, _ = vq(z)
    assert codes[0, 0].tolist() == [1, 0, 2]


def test_more_stages_reduce_the_error():
    torch.manual_seed(0)
    vq = ComplexResidualVQ(4, num_quantizers=6, codebook_size=64, decay_warmup_steps=1)
    z = _latent(8, 32, 4)
    vq.train()
    for _ in range(30):
        vq(z)
    vq.eval()
    errs = [float((vq(z, n)[0] - z).abs().pow(2).mean()) for n in range(1, 7)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs


def test_training_refuses_a_partial_depth_and_eval_checks_n():
    torch.manual_seed(0)
    vq = ComplexResidualVQ(3, num_quantizers=4, codebook_size=8)
    with pytest.raises(ValueError, match="training runs every"):
        vq.train()(_latent(), n_quantizers=2)
    with pytest.raises(ValueError, match="1..4"):
        vq.eval()(_latent(), n_quantizers=5)
    with pytest.raises(ValueError, match="out of range"):
        vq.decode_codes(torch.full((1, 2, 3), 8))


def test_dead_codes_restart_and_perplexity_is_reported():
    # 2048 entries, 48 vectors per step: most codes go unused and must be restarted from recent residuals
    torch.manual_seed(0)
    vq = ComplexResidualVQ(3, num_quantizers=2, codebook_size=2048, dead_after_steps=3, decay_warmup_steps=1)
    vq.train()
    for i in range(12):
        vq(_latent(3, 16, 3, seed=i))
    stats = vq.stats()
    assert sum(stats["restarts"]) > 1000
    assert len(stats["perplexity"]) == 2 and all(p > 1 for p in stats["perplexity"])
    assert all(0 < u <= 1 for u in stats["usage"])
    vq.reset_stats()
    assert vq.stats()["perplexity"] == [1.0, 1.0]


def test_perplexity_counts_collapse():
    vq = ComplexResidualVQ(1, num_quantizers=1, codebook_size=16)
    vq.usage_counts[0, 3] = 100.0
    assert vq.stats()["perplexity"][0] == pytest.approx(1.0)
    vq.usage_counts[0] = 1.0
    assert vq.stats()["perplexity"][0] == pytest.approx(16.0, rel=1e-4)


def test_straight_through_gradient_reaches_the_input():
    torch.manual_seed(0)
    vq = ComplexResidualVQ(3, num_quantizers=2, codebook_size=8)
    z = _latent().requires_grad_(True)
    zq, _, commit = vq.train()(z)
    (zq.abs().sum() + commit).backward()
    assert torch.isfinite(torch.view_as_real(z.grad)).all() and z.grad.abs().sum() > 0


def _scale_mixture(n=3000, h=4, seed=0):
    """Frames whose energy spans 40 dB, like speech latents: most quiet, a few loud."""
    g = torch.Generator().manual_seed(seed)
    scale = 10 ** (-2 * torch.rand(n, 1, generator=g))
    return torch.complex(torch.randn(n, h, generator=g), torch.randn(n, h, generator=g)) * scale


def _stage_error(vq, z, stage_count):
    x = torch.view_as_real(z).reshape(z.shape[0], -1)
    r = x.clone()
    for s in range(stage_count):
        r = r - vq.codebooks[s][vq._nearest(r, s)]
    return float((r * r).sum() / (x * x).sum())


def test_kmeans_refit_lowers_the_error_uses_every_code_and_keeps_ema_consistent():
    torch.manual_seed(0)
    z = _scale_mixture(2000, 3)
    vq = ComplexResidualVQ(3, num_quantizers=3, codebook_size=64)
    vq.train()
    vq(z[:16].view(1, 16, 3))  # initialised from one small batch, as training does
    before = _stage_error(vq, z, 3)
    fit = vq.fit_kmeans(z, iters=10, frames_per_step=50)
    after = _stage_error(vq, z, 3)
    assert after < 0.5 * before
    assert fit["relative_error"][-1] == pytest.approx(after, rel=1e-3)
    assert fit["relative_error"] == sorted(fit["relative_error"], reverse=True)
    # every entry serves some frame: empty clusters were re-seeded
    x = torch.view_as_real(z).reshape(z.shape[0], -1)
    assert torch.unique(vq._nearest(x, 0)).numel() == 64
    # the EMA state reproduces the fitted codebooks, scaled to 50 frames per step
    cb = vq.ema_embed_sum / vq.ema_cluster_size.unsqueeze(-1)
    assert torch.allclose(cb, vq.codebooks, atol=1e-5)
    assert vq.ema_cluster_size[0].sum().item() == pytest.approx(50, rel=0.01)
    with pytest.raises(ValueError, match="at least 64 frames"):
        vq.fit_kmeans(z[:10])


def test_inverse_energy_weighting_spreads_codes_over_quiet_frames():
    torch.manual_seed(0)
    z = _scale_mixture(4000, 4, seed=1)
    plain = ComplexResidualVQ(4, num_quantizers=1, codebook_size=128)
    weighted = ComplexResidualVQ(4, num_quantizers=1, codebook_size=128, weight_power=2.0)
    p_plain = plain.fit_kmeans(z, iters=10)["perplexity"][0]
    p_weighted = weighted.fit_kmeans(z, iters=10)["perplexity"][0]
    assert p_weighted > 1.3 * p_plain
    # relative error of the quiet half: served far better by the weighted fit
    quiet = z[(z.abs() ** 2).sum(1) < (z.abs() ** 2).sum(1).median()]
    assert _stage_error(weighted, quiet, 1) < 0.8 * _stage_error(plain, quiet, 1)


def test_weighted_ema_update_moves_an_entry_to_the_weighted_mean():
    vq = ComplexResidualVQ(1, num_quantizers=1, codebook_size=1, weight_power=2.0, decay_warmup_steps=1,
                           decay_start=0.0, decay_end=0.0)
    vq.train()
    z = torch.tensor([[1.0 + 0j], [10.0 + 0j]]).view(1, 2, 1)
    vq.initialized.fill_(True)
    vq(z)
    w = vq._frame_weights(torch.tensor([[1.0, 0.0], [10.0, 0.0]]))
    expected = (w[0] * 1.0 + w[1] * 10.0) / w.sum()
    assert float(vq.codebooks[0, 0, 0]) == pytest.approx(float(expected), rel=1e-4)
    assert float(expected) < 2.0  # the quiet frame dominates (an unweighted mean would be 5.5)
