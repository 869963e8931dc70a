"""DAC generator and RVQ: shapes and hop alignment per config, codes in range, the n_codebooks
contract (eval runs exactly n; training never exceeds n; dropout only in training), and
reconstruction error falling as codebooks are added on a briefly fitted RVQ."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from bench.models.dac_model import CONFIGS, DAC, DACConfig, count_parameters
from bench.models.layers import DecoderBlock, EncoderBlock, Snake1d
from bench.models.rvq import ResidualVQ

torch.set_num_threads(1)


def _narrow(cfg: DACConfig) -> DACConfig:
    """Same rates, codebooks and rate as ``cfg`` with tiny widths, so shape checks run in milliseconds."""
    return replace(cfg, encoder_dim=2, latent_dim=8, decoder_dim=32, codebook_dim=4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shapes_and_hop_alignment(name):
    torch.manual_seed(0)
    cfg = CONFIGS[name]
    model = DAC(_narrow(cfg) if name not in ("tiny",) else cfg).eval()
    hop = cfg.hop_length
    assert math.isclose(cfg.frame_rate_hz * hop, cfg.sample_rate_hz)
    for length in (hop * 3, hop * 3 + 1, hop * 4 - 1):
        x = 0.1 * torch.randn(2, 1, length)
        out = model(x, n_codebooks=cfg.n_codebooks)
        frames = math.ceil(length / hop)
        assert out.codes.shape == (2, cfg.n_codebooks, frames)
        assert out.audio.shape == x.shape
        assert out.codes.dtype == torch.int64
        assert int(out.codes.min()) >= 0 and int(out.codes.max()) < cfg.codebook_size
    # the decoder maps F frames to exactly F * hop samples (no lost samples on odd strides)
    codes = torch.randint(0, cfg.codebook_size, (1, 2, 5))
    assert model.decode(codes).shape == (1, 1, 5 * hop)


def test_published_configs_match_the_paper():
    """44.1 kHz: strides 2,4,8,8 (hop 512, 86 Hz), 9 x 1024 codebooks = 7.75 kbps, ~76 M parameters."""
    c44, c24, c16 = CONFIGS["44k"], CONFIGS["24k"], CONFIGS["16k"]
    assert (c44.hop_length, c44.n_codebooks, c44.codebook_size, c44.decoder_dim) == (512, 9, 1024, 1536)
    assert c44.kbps(9) == pytest.approx(7.75, abs=0.01)
    assert (c24.hop_length, c24.n_codebooks, c16.hop_length, c16.n_codebooks) == (320, 32, 320, 12)
    assert c24.kbps(32) == pytest.approx(24.0) and c16.kbps(12) == pytest.approx(6.0)
    with torch.device("meta"):
        n_params = count_parameters(DAC(c44))
    assert 75e6 < n_params < 78e6, n_params


@pytest.mark.parametrize("stride", [2, 3, 4, 5, 8])
def test_blocks_change_length_by_exactly_the_stride(stride):
    torch.manual_seed(0)
    x = torch.randn(1, 4, stride * 7)
    y = EncoderBlock(4, 8, stride)(x)
    assert y.shape == (1, 8, 7)
    assert DecoderBlock(8, 4, stride)(y).shape == (1, 4, stride * 7)


def test_snake_is_identity_plus_periodic_term():
    s = Snake1d(3)
    with torch.no_grad():
        s.alpha.copy_(torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1))
    x = torch.linspace(-3, 3, 50).repeat(1, 3, 1)
    a = s.alpha
    assert torch.allclose(s(x), x + torch.sin(a * x) ** 2 / a, atol=1e-6)
    assert sum(p.numel() for p in s.parameters()) == 3  # one alpha per channel


def test_weight_norm_uses_the_parametrizations_api():
    torch.manual_seed(0)
    model = DAC(CONFIGS["tiny"])
    keys = list(model.state_dict())
    assert any(k.endswith("parametrizations.weight.original0") for k in keys)
    assert not any(k.endswith("weight_g") or k.endswith("weight_v") for k in keys)


def _rvq(dropout=0.5, n=6, dim=16, size=32):
    torch.manual_seed(0)
    return ResidualVQ(dim, n, size, codebook_dim=4, quantizer_dropout=dropout)


def test_eval_runs_exactly_the_requested_codebooks():
    rvq = _rvq().eval()
    z = torch.randn(8, 16, 10)
    for n in range(1, 7):
        out = rvq(z, n_codebooks=n)
        assert out.codes.shape == (8, n, 10)
        assert torch.all(out.n_active == n)
    # the first n codes do not depend on how many come after
    assert torch.equal(rvq(z, n_codebooks=2).codes, rvq(z, n_codebooks=5).codes[:, :2])
    # the decoded latent of n codes equals the quantised latent
    out = rvq(z, n_codebooks=3)
    assert torch.allclose(rvq.decode_codes(out.codes), out.z_q, atol=1e-5)


def test_n_codebooks_cannot_be_ignored():
    rvq = _rvq()
    z = torch.randn(4, 16, 5)
    with pytest.raises(TypeError):
        rvq(z)  # no default: the caller must say how many codebooks
    with pytest.raises(ValueError):
        rvq(z, n_codebooks=7)
    with pytest.raises(ValueError):
        rvq(z, n_codebooks=0)
    with pytest.raises(ValueError):
        rvq.decode_codes(torch.full((1, 2, 3), 32))  # code out of range
    rvq.train()
    for _ in range(20):  # training never uses more than asked, even with dropout
        out = rvq(z, n_codebooks=3)
        assert out.codes.shape[1] == 3 and int(out.n_active.max()) <= 3


def test_quantizer_dropout_only_in_training():
    rvq = _rvq(dropout=0.5)
    z = torch.randn(16, 16, 5)
    rvq.train()
    torch.manual_seed(1)
    counts = torch.stack([rvq(z, n_codebooks=6).n_active for _ in range(10)])
    assert torch.all(counts[:, 8:] == 6)  # the other half of the batch keeps every codebook
    assert (counts[:, :8] < 6).any() and torch.all(counts >= 1)
    rvq.eval()
    assert all(torch.all(rvq(z, n_codebooks=6).n_active == 6) for _ in range(5))
    assert torch.equal(rvq(z, n_codebooks=6).z_q, rvq(z, n_codebooks=6).z_q)  # deterministic
    no_drop = _rvq(dropout=0.0).train()
    assert torch.all(no_drop(z, n_codebooks=6).n_active == 6)


def test_straight_through_gradient_reaches_the_input():
    rvq = _rvq().train()
    z = torch.randn(2, 16, 5, requires_grad=True)
    out = rvq(z, n_codebooks=4)
    (out.z_q.pow(2).sum() + out.commitment_loss.sum() + out.codebook_loss.sum()).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    # EMA codebooks (the default) take no optimiser step; the released codebook loss trains them by gradient
    assert rvq.quantizers[0].codebook.weight.grad is None
    torch.manual_seed(0)
    released = ResidualVQ(16, 6, 32, codebook_dim=4, ema_decay=None, data_init=False).train()
    out = released(z, n_codebooks=4)
    out.codebook_loss.sum().backward()
    assert released.quantizers[0].codebook.weight.grad.abs().sum() > 0


def test_residual_alignment_trains_only_the_out_projection():
    rvq = _rvq().train()
    z = torch.randn(2, 16, 5, requires_grad=True)
    out = rvq(z, n_codebooks=4)
    out.residual_loss.sum().backward()
    stage = rvq.quantizers[0]
    assert z.grad is None or z.grad.abs().sum() == 0  # the residual is a detached target
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in stage.in_proj.parameters())
    assert sum(float(p.grad.abs().sum()) for p in stage.out_proj.parameters()) > 0


def test_reconstruction_error_falls_as_codebooks_are_added():
    """Fit an RVQ briefly on structured latents; each extra codebook must then lower the error."""
    torch.manual_seed(0)
    rvq = ResidualVQ(8, 4, 32, codebook_dim=4, quantizer_dropout=0.5)
    basis = torch.randn(8, 3)
    data = basis @ torch.randn(3, 2048)  # latents on a 3-d subspace, [8, 2048]
    z = data.t().reshape(64, 32, 8).transpose(1, 2)  # [B=64, D=8, T=32]
    opt = torch.optim.Adam(rvq.parameters(), lr=3e-3)
    rvq.train()
    for _ in range(150):
        out = rvq(z, n_codebooks=4)
        loss = (out.z_q - z).pow(2).mean() + out.codebook_loss.mean() + 0.25 * out.commitment_loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rvq.eval()
    with torch.no_grad():
            errors = [float((rvq(z, n_codebooks=n).z_q - z).pow(2).mean()) for n in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0], errors
