"""VRVQ model: prefix masks, the straight-through surrogates, the training recipe, reuse of DAC.

All on the ``tiny`` config or on bare tensors; no training beyond single gradient steps.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.models.dac_model import DAC
from bench.models.dac_model import get_config as dac_config
from bench.models.vrvq_model import (
    CONFIGS, ImportanceNet, VRVQ, VRVQConfig, counts_from_importance, importance_to_mask, logcosh_step,
    prefix_mask, saturated_step,
)

torch.set_num_threads(1)


def _is_prefix(mask: torch.Tensor) -> bool:
    """Every frame of ``[B, N, T]`` is 1...1 0...0 with at least one 1."""
    ones = mask.sum(dim=1)
    expected = prefix_mask(ones.round().long(), mask.shape[1])
    return bool((ones >= 1).all()) and torch.equal(mask, expected)


def test_hard_masks_are_monotone_prefixes_with_the_count_formula():
    torch.manual_seed(0)
    nq = 8
    p = torch.rand(16, 200)
    p[0, :5] = torch.tensor([0.0, 1e-6, 0.999999, 0.5, 7 / 48])
    for level in (0.125, 0.3, 1.0, 2.5, 6.0):
        mask = importance_to_mask(p * level * nq, nq)
        assert _is_prefix(mask), level
        counts = counts_from_importance(p, level, nq)
        assert torch.equal(mask.sum(dim=1).long(), counts)
        assert torch.equal(counts, (torch.floor(p * level * nq) + 1).clamp(max=nq).long())
    # level 0.125 x 8 codebooks: S = 1, so every frame (p < 1) uses exactly one codebook
    assert bool((counts_from_importance(p.clamp(max=0.999), 0.125, nq) == 1).all())
    # level 6: S = 48, all 8 codebooks once S p >= 7
    assert int(counts_from_importance(torch.tensor([[7 / 48 + 1e-4]]), 6.0, nq)) == 8
    # more level never means fewer codebooks, frame by frame
    levels = torch.linspace(0.125, 6, 25)
    per_level = torch.stack([counts_from_importance(p, float(lv), nq) for lv in levels])
    assert bool((per_level[1:] >= per_level[:-1]).all())


def test_model_masks_are_prefixes_in_every_mode():
    torch.manual_seed(1)
    model = VRVQ(CONFIGS["tiny"])
    x = torch.randn(4, 1, 1200) * 0.1
    out = model(x)  # training recipe
    assert _is_prefix(out.extra["mask"])
    model.eval()
    for level in (0.25, 1.0, 3.0):
        assert _is_prefix(model(x, level=level).extra["mask"])
    cbr = model(x, n_codebooks=2).extra["mask"]
    assert cbr.shape[1] == 2 and bool((cbr == 1).all())


def _reference_logcosh(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """The official VRVQ code's two-branch form (models/utils.py), written out independently."""
    pos = x >= 0
    xp, xn = x * pos, x * (~pos)
    s_pos = (torch.log(math.exp(alpha) + torch.exp(-2 * alpha * xp))
             - torch.log(torch.exp(alpha * (1 - 2 * xp)) + 1)) / (2 * alpha) + 0.5
    s_neg = (torch.log(torch.exp(alpha * (2 * xn + 1)) + 1)
             - torch.log(math.exp(alpha) + torch.exp(2 * alpha * xn))) / (2 * alpha) + 0.5
    return torch.where(pos, s_pos, s_neg)


def test_logcosh_surrogate_matches_the_reference_formula_and_limits():
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    for alpha in (0.5, 2.0, 8.0):
        assert torch.allclose(logcosh_step(x, alpha), _reference_logcosh(x, alpha), atol=1e-12)
    assert float(logcosh_step(torch.tensor(0.0), 2.0)) == pytest.approx(0.5)
    # alpha -> infinity gives the baseline saturated identity clamp(x + 1/2, 0, 1)
    assert torch.allclose(logcosh_step(x, 200.0), saturated_step(x), atol=5e-3)
    # no overflow far out
    big = torch.tensor([-1e4, 1e4])
    assert torch.equal(logcosh_step(big, 2.0), torch.tensor([0.0, 1.0]))


def _mask_grads(surrogate: str, scaled: torch.Tensor, nq: int) -> torch.Tensor:
    """d mask[k] / d (S p) for every codebook k and every point of ``scaled [T]``: ``[N, T]``."""
    rows = []
    for k in range(nq):
        s = scaled.clone().requires_grad_(True)
        mask = importance_to_mask(s[None], nq, surrogate=surrogate, alpha=2.0)
        (grad,) = torch.autograd.grad(mask[0, k].sum(), s)
        rows.append(grad)
    return torch.stack(rows)


def test_logcosh_passes_gradient_everywhere_the_saturated_identity_passes_none():
    nq = 8
    scaled = torch.linspace(0.0, 48.0, 961, dtype=torch.float64)  # S p over its whole range at level 6
    g_log = _mask_grads("logcosh", scaled, nq)
    g_sat = _mask_grads("saturated", scaled, nq)
    # forward values are the hard mask for both
    hard = importance_to_mask(scaled[None], nq, surrogate="saturated")
    assert torch.equal(hard, importance_to_mask(scaled[None], nq, surrogate="logcosh"))
    assert torch.equal(hard[0], (scaled[None, :] >= torch.arange(nq, dtype=scaled.dtype)[:, None]).double())
    # saturated identity: codebook k gets gradient only within half a step of its threshold k
    dist = (scaled[None, :] - torch.arange(nq, dtype=scaled.dtype)[:, None]).abs()
    assert bool((g_sat[dist > 0.5] == 0).all()) and bool((g_sat[dist < 0.5] == 1).all())
    # log-cosh: strictly positive for every codebook over the whole range, including everywhere
    # g_sat == 0; its slope is the exact sinh(alpha) / (2 cosh cosh), not a cancelling tanh difference
    assert bool((g_log > 0).all())
    exact = (torch.tanh(2.0 * (dist + 0.5)) - torch.tanh(2.0 * (dist - 0.5))) / 2
    assert torch.allclose(g_log, exact, rtol=1e-9, atol=1e-15)
    # summed over codebooks: past the last threshold (S p > N_q - 1/2) the baseline passes nothing
    past = scaled > nq - 0.5
    assert bool((g_sat.sum(0)[past] == 0).all()) and bool((g_log.sum(0)[past] > 0).all())
    # float32 (training precision): still positive within 20 steps of a threshold
    g32 = _mask_grads("logcosh", scaled.float(), nq)
    assert bool((g32[dist < 20] > 0).all())


def test_training_recipe_levels_full_items_and_rate_loss():
    torch.manual_seed(2)
    model = VRVQ(CONFIGS["tiny"])
    x = torch.randn(8, 1, 1600) * 0.1
    out = model(x)
    vbr = out.extra["vbr_items"]
    # 25% of the batch (the last 2 of 8) uses all codebooks
    assert vbr.tolist() == [True] * 6 + [False] * 2
    nq = model.n_codebooks
    assert bool((out.extra["counts"][~vbr] == nq).all())
    p = out.extra["importance"]
    assert float(out.extra["rate_loss"].detach()) == pytest.approx(float(p[:6].mean().detach()), rel=1e-6)
    # the rate term and the reconstruction reach the importance net; full items add nothing to it
    loss = out.audio.pow(2).mean() + 2.0 * out.extra["rate_loss"]
    loss.backward()
    grads = [q.grad for q in model.importance.parameters() if q.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_level_scaling_uses_level_times_nq():
    torch.manual_seed(0)
    model = VRVQ(CONFIGS["tiny"]).eval()
    p = torch.full((1, 10), 0.5)
    nq = model.n_codebooks  # 4
    # S p = level x 4 x 0.5 = 2 level -> count floor(2 level) + 1
    for level, count in ((0.25, 1), (0.5, 2), (1.0, 3), (1.5, 4), (6.0, 4)):
        assert int(model.frame_mask(p, level).sum(dim=1)[0, 0]) == count == int(counts_from_importance(p, level, nq)[0, 0])


def test_importance_net_widths_follow_the_paper_and_scale():
    torch.manual_seed(0)
    paper = VRVQConfig(dac_config("44k"))
    assert paper.body_channels == 1024
    assert paper.resolved_importance_widths() == (1024, 512, 128, 32, 8)
    net = ImportanceNet(1024, paper.resolved_importance_widths())
    chans = [(b[1].in_channels, b[1].out_channels, b[1].kernel_size[0]) for b in net.blocks]
    assert chans == [(1024, 1024, 3), (1024, 512, 3), (512, 128, 3), (128, 32, 3), (32, 8, 3), (8, 1, 3)]
    assert CONFIGS["small"].resolved_importance_widths() == (128, 64, 16, 4, 1)
    assert not paper.importance_input_norm and CONFIGS["small"].importance_input_norm
    assert CONFIGS["small"].backbone.quantizer_dropout == 0.0
    cfg = CONFIGS["small"]
    assert VRVQConfig.from_dict(cfg.to_dict()) == VRVQConfig.from_dict(VRVQConfig.from_dict(cfg.to_dict()).to_dict())
    assert VRVQConfig.from_dict(cfg.to_dict()).backbone == cfg.backbone
    with pytest.raises(ValueError, match="surrogate"):
        VRVQConfig(cfg.backbone, surrogate="sigmoid")


def test_inference_path_equals_forward_and_cbr_equals_dac_with_the_same_weights():
    torch.manual_seed(3)
    dac = DAC(dac_config("tiny")).eval()
    model = VRVQ(CONFIGS["tiny"])
    result = model.load_state_dict(dac.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("importance.") for k in result.missing_keys)
    model.train()
    model(torch.randn(2, 1, 1600) * 0.1)  # measures the importance input RMS
    model.eval()
    # that training call also moved the chosen EMA codewords (bench.models.rvq): give DAC the same weights
    dac.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("importance.")})
    x = torch.randn(2, 1, 1999) * 0.1
    with torch.no_grad():
        for n in (1, 3, 4):
            assert torch.allclose(model(x, n_codebooks=n).audio, dac(x, n_codebooks=n).audio, atol=1e-6)
            codes, counts = model.encode_frames(x, n_codebooks=n)
            assert torch.equal(codes, dac.encode(x, n)) and bool((counts == n).all())
        for level in (0.25, 1.0, 6.0):
            codes, counts = model.encode_frames(x, level=level)
            y = model.decode_frames(codes, counts, x.shape[-1])
            assert torch.allclose(y, model(x, level=level).audio, atol=1e-6)
            assert torch.equal(counts, model(x, level=level).extra["counts"])
    with pytest.raises(ValueError, match="not both"):
        model(x, n_codebooks=2, level=1.0)
    with pytest.raises(ValueError, match="outside training"):
        model(x)
