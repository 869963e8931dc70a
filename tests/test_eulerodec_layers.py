"""EuleroDec's complex layers: phase behaviour, whitening statistics, attention, and the fast conv path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.models.complex import (AxialAttention2d, ComplexConv2d, ComplexConvTranspose2d,
                                     ComplexMultiheadAttention, ComplexWhitening2d, ModReLU)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def test_modrelu_keeps_phase_and_rectifies_modulus():
    act = ModReLU(3, init_bias=-0.5)
    z = _rand(4, 3, 8, 9)
    out = act(z)
    assert out.dtype == torch.complex64
    alive = out.abs() > 0
    assert alive.any() and (~alive).any()  # some moduli are under 0.5, some above
    assert torch.allclose(torch.angle(out[alive]), torch.angle(z[alive]), atol=1e-5)
    assert torch.allclose(out.abs()[alive], z.abs()[alive] - 0.5, atol=1e-5)
    assert torch.all(z.abs()[~alive] <= 0.5 + 1e-6)


def test_modrelu_gradient_is_finite_at_zero():
    act = ModReLU(1, init_bias=0.1)
    z = torch.zeros(1, 1, 2, 2, dtype=torch.complex64, requires_grad=True)
    act(z).abs().sum().backward()
    assert torch.isfinite(torch.view_as_real(z.grad)).all()


def test_whitening_gives_identity_covariance_on_correlated_input():
    z = _rand(16, 3, 12, 10)
    mix = torch.tensor([[2.0, 1.0], [0.5, 1.3]])
    correlated = torch.view_as_complex((torch.view_as_real(z) @ mix.T + torch.tensor([1.0, -2.0])).contiguous())
    norm = ComplexWhitening2d(3)
    out = norm(correlated)  # training mode: batch statistics
    pairs = torch.view_as_real(out).permute(1, 0, 2, 3, 4).reshape(3, -1, 2)
    assert pairs.mean(1).abs().max() < 1e-4
    cov = torch.einsum("cnk,cnl->ckl", pairs, pairs) / pairs.shape[1]
    assert torch.allclose(cov, torch.eye(2).expand(3, 2, 2), atol=1e-3)


def test_whitening_running_stats_used_in_eval_and_degenerate_channel_is_finite():
    norm = ComplexWhitening2d(2, momentum=1.0)
    z = _rand(8, 2, 6, 6)
    z[:, 1] = torch.complex(z[:, 1].real, z[:, 1].real)  # rank-1 (Re == Im): determinant 0
    train_out = norm(z)
    assert torch.isfinite(torch.view_as_real(train_out)).all()
    norm.eval()
    eval_out = norm(z)  # momentum 1: running stats == last batch stats
    assert torch.allclose(eval_out, train_out, atol=1e-3)
    norm(z * 0).abs().sum()  # all-zero input: finite too
    assert torch.isfinite(torch.view_as_real(norm(z * 0))).all()


@pytest.mark.parametrize("stride,dilation", [((1, 1), (1, 1)), ((2, 1), (1, 2)), ((2, 2), (1, 1))])
def test_complex_conv_matches_native_complex_conv(stride, dilation):
    torch.manual_seed(0)
    conv = ComplexConv2d(3, 5, 3, stride=stride, padding=(1, dilation[1]), dilation=dilation)
    x = _rand(2, 3, 16, 12)
    ref = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
    assert torch.allclose(conv(x), ref, atol=1e-5)


def test_complex_transposed_conv_matches_native():
    torch.manual_seed(0)
    conv = ComplexConvTranspose2d(3, 4, (4, 3), stride=(2, 1), padding=1)
    x = _rand(2, 3, 8, 7)
    ref = F.conv_transpose2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert torch.allclose(conv(x), ref, atol=1e-5)


@pytest.mark.parametrize("phi", [0.7, -2.1, math.pi])
def test_bias_free_complex_conv_is_phase_equivariant(phi):
    torch.manual_seed(0)
    rot = torch.polar(torch.tensor(1.0), torch.tensor(phi))
    x = _rand(2, 3, 10, 9)
    for conv in (ComplexConv2d(3, 4, 3, padding=1, bias=False),
                 ComplexConvTranspose2d(3, 4, 4, stride=2, padding=1, bias=False)):
        assert torch.allclose(conv(x * rot), conv(x) * rot, atol=1e-5)
    # with a bias the layer is affine, not equivariant (so the test above can fail)
    biased = ComplexConv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        biased.bias.fill_(1 + 1j)
    assert not torch.allclose(biased(x * rot), biased(x) * rot, atol=1e-3)


def test_attention_scores_are_real_and_output_is_phase_equivariant():
    torch.manual_seed(0)
    attn = ComplexMultiheadAttention(4, num_heads=2)
    with torch.no_grad():
        attn.out.bias.zero_()
    x = _rand(3, 7, 4)
    rot = torch.polar(torch.tensor(1.0), torch.tensor(1.3))
    # Re(q^H k) is invariant to a global phase, the values rotate: the output rotates with the input
    assert torch.allclose(attn(x * rot), attn(x) * rot, atol=1e-5)
    # by hand for one head of size 2: weights = softmax(Re(q^H k) / sqrt(2)) mix the complex values
    q, k, v = attn._project(x)
    scores = (q.conj() @ k.transpose(-1, -2)).real / math.sqrt(2)
    manual = torch.softmax(scores, -1).to(v.dtype) @ v
    assert manual.shape == (3, 2, 7, 2)


def test_local_window_attention_equals_full_attention_when_window_covers_everything():
    torch.manual_seed(0)
    full = ComplexMultiheadAttention(4, num_heads=2, window=0)
    local = ComplexMultiheadAttention(4, num_heads=2, window=6)
    local.load_state_dict(full.state_dict())
    x = _rand(2, 7, 4)
    assert torch.allclose(full(x), local(x), atol=1e-5)
    short = ComplexMultiheadAttention(4, num_heads=2, window=1)
    short.load_state_dict(full.state_dict())
    y = short(x)
    x2 = x.clone()
    x2[:, 6] += 5  # position 6 is outside position 0's window of +-1
    assert torch.allclose(short(x2)[:, 0], y[:, 0], atol=1e-6)
    assert not torch.allclose(full(x2)[:, 0], full(x)[:, 0], atol=1e-4)


@pytest.mark.parametrize("axis", ["time", "freq"])
def test_axial_attention_shapes_and_gradients(axis):
    torch.manual_seed(0)
    layer = AxialAttention2d(4, axis, num_heads=2, window=2, num_positions=5 if axis == "freq" else 0)
    x = _rand(2, 4, 5, 9).requires_grad_(True)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == torch.complex64
    y.abs().sum().backward()
    assert all(torch.isfinite(torch.view_as_real(p.grad) if p.is_complex() else p.grad).all()
               for p in layer.parameters() if p.grad is not None)
