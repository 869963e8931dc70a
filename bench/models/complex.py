"""Complex-valued layers on PyTorch's native complex tensors (EuleroDec, arXiv 2601.17517).

Every activation between these layers is a ``torch.complex64`` tensor ``[B, C, F, T]``; nothing here
splits real and imaginary parts into channels. Autograd handles complex parameters with its
Wirtinger convention, so ``AdamW`` trains them as they are.

* :class:`ComplexConv2d` / :class:`ComplexConvTranspose2d`: complex weights, optional complex bias.
  Without bias they are complex-linear, so a global phase rotation of the input rotates the output
  by the same angle (phase equivariance).
* :class:`ModReLU`: ``relu(|z| + b) * z / |z|`` with a learnable real bias per channel. The phase of
  ``z`` is kept; only the modulus is rectified.
* :class:`ComplexWhitening2d`: complex batch normalisation (Trabelsi et al., 2018): centre, then
  whiten the 2x2 covariance of (Re, Im) per channel, then a learnable 2x2 affine and a complex shift.
  Computed in float32 with the determinant clamped, so a degenerate (rank-1) channel gives finite
  output rather than NaN.
* :class:`ComplexMultiheadAttention`: scores ``Re(q^H k) / sqrt(d)``, a real softmax, weights applied
  to complex values. :class:`AxialAttention2d` runs it along time (in a local window, so long files
  cost linear memory) or along frequency (full).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CDTYPE = torch.complex64
Size2d = int | tuple[int, int]  # a kernel size, stride, padding or dilation: one int for both axes, or (F, T)


def _to_stacked(x: torch.Tensor) -> torch.Tensor:
    """Complex [B, C, F, T] -> real [B, 2C, F, T] with channels (Re c0, Im c0, Re c1, ...)."""
    b, c = x.shape[:2]
    return torch.view_as_real(x).movedim(-1, 2).reshape(b, 2 * c, *x.shape[2:])


def _from_stacked(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_to_stacked`: real [B, 2C, F, T] -> complex [B, C, F, T]."""
    b, c2 = y.shape[:2]
    return torch.view_as_complex(y.reshape(b, c2 // 2, 2, *y.shape[2:]).movedim(2, -1).contiguous())


def _block_weight(w: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """Complex weight A + iB [O, I, ...] -> real [[A, -B], [B, A]] [2O, 2I, ...] (interleaved).

    Multiplying by it is complex multiplication written in real arithmetic: (A + iB)(u + iv) =
    (Au - Bv) + i(Bu + Av). For a transposed convolution the weight is [I, O, ...] and the block
    is transposed accordingly.
    """
    a, bb = w.real, w.imag
    if transposed:  # weight [I, O, ...]: rows are inputs, so each input's (Re, Im) maps to outputs
        top = torch.stack([a, bb], dim=2)      # in Re -> (out Re, out Im)
        bot = torch.stack([-bb, a], dim=2)     # in Im -> (out Re, out Im)
    else:
        top = torch.stack([a, -bb], dim=2)     # out Re <- (in Re, in Im)
        bot = torch.stack([bb, a], dim=2)      # out Im <- (in Re, in Im)
    blk = torch.stack([top, bot], dim=1)       # [O, 2, I, 2, ...]
    o, i = w.shape[:2]
    return blk.reshape(2 * o, 2 * i, *w.shape[2:])


def _complex_init_(weight: torch.Tensor, fan_in: int) -> None:
    """Complex He-style init: Rayleigh modulus, uniform phase, ``E|w|^2 = 1 / fan_in``."""
    with torch.no_grad():
        sigma = 1.0 / math.sqrt(fan_in)
        modulus = torch.empty(weight.shape).exponential_().sqrt_() * sigma  # Rayleigh, E[m^2] = sigma^2
        phase = torch.empty(weight.shape).uniform_(-math.pi, math.pi)
        weight.copy_(torch.polar(modulus, phase))


class ComplexConv2d(nn.Module):
    """2-D convolution with complex weights (``torch.nn.functional.conv2d`` on complex64)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size2d = 3, stride: Size2d = 1,
                 padding: Size2d = 0, dilation: Size2d = 1, bias: bool = True) -> None:
        super().__init__()
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *ks, dtype=CDTYPE))
        _complex_init_(self.weight, in_channels * ks[0] * ks[1])
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=CDTYPE)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve complex ``[B, in_channels, F, T] -> [B, out_channels, F', T']`` (complex64)."""
        # Same result as F.conv2d on complex64, about 4x faster on CPU (one real convolution with
        # the 2x2 block weight instead of PyTorch's three convolutions plus elementwise work).
        bias = None if self.bias is None else torch.view_as_real(self.bias).reshape(-1)
        y = F.conv2d(_to_stacked(x), _block_weight(self.weight), bias, self.stride, self.padding, self.dilation)
        return _from_stacked(y)


class ComplexConvTranspose2d(nn.Module):
    """Transposed 2-D convolution with complex weights, the decoder's upsampling layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size2d, stride: Size2d,
                 padding: Size2d = 0, bias: bool = True) -> None:
        super().__init__()
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, *ks, dtype=CDTYPE))
        # each output sees about in_channels * prod(ks) / prod(stride) taps
        st = (stride, stride) if isinstance(stride, int) else tuple(stride)
        _complex_init_(self.weight, max(1, in_channels * ks[0] * ks[1] // (st[0] * st[1])))
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=CDTYPE)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample complex ``[B, in_channels, F, T] -> [B, out_channels, F', T']`` (F', T' grown by the stride)."""
        bias = None if self.bias is None else torch.view_as_real(self.bias).reshape(-1)
        y = F.conv_transpose2d(_to_stacked(x), _block_weight(self.weight, transposed=True), bias,
                               self.stride, self.padding)
        return _from_stacked(y)


class ModReLU(nn.Module):
    """modReLU (Arjovsky et al., 2016): rectify the modulus with a learnable bias, keep the phase.

    The bias starts negative: with ``b >= 0`` modReLU is the identity on the modulus, so a zero
    initialisation would make the network linear at the start of training.
    """

    def __init__(self, channels: int, init_bias: float = -0.1, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((channels,), float(init_bias)))
        self.eps = eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Rectify the modulus of complex ``z [B, C, ...]`` per channel, keep its phase; same shape out."""
        v = torch.view_as_real(z)  # arithmetic on the (Re, Im) view is faster than complex abs/mul on CPU
        modulus = (v * v).sum(-1).clamp_min(self.eps * self.eps).sqrt()
        shape = (1, -1) + (1,) * (z.dim() - 2)
        scale = F.relu(modulus + self.bias.view(shape)) / (modulus + self.eps)
        return torch.view_as_complex(v * scale.unsqueeze(-1))


class ComplexWhitening2d(nn.Module):
    """Complex batch normalisation by 2x2 whitening of (Re, Im) per channel.

    Training mode uses the batch statistics over (batch, frequency, time) and updates running
    estimates; eval mode uses the running estimates, so the codec is deterministic per item.
    The inverse square root of the covariance ``V`` is analytic: with ``s = sqrt(det V)`` and
    ``t = sqrt(tr V + 2 s)``, ``sqrt(V) = (V + s I) / t`` and so
    ``V^{-1/2} = [[Vii + s, -Vri], [-Vri, Vrr + s]] / (s t)``.
    The determinant is clamped to ``min_det`` so near-singular channels cannot produce NaN.
    """

    running_mean: torch.Tensor  # [2, C] buffer: running (Re, Im) means
    running_cov: torch.Tensor  # [3, C] buffer: running (Vrr, Vri, Vii)

    def __init__(self, channels: int, momentum: float = 0.05, eps: float = 1e-5, min_det: float = 1e-8,
                 affine: bool = True) -> None:
        super().__init__()
        self.channels, self.momentum, self.eps, self.min_det = channels, momentum, eps, min_det
        self.affine = affine
        if affine:
            # gamma = [[g_rr, g_ri], [g_ri, g_ii]], initialised to the identity
            self.gamma_rr = nn.Parameter(torch.ones(channels))
            self.gamma_ii = nn.Parameter(torch.ones(channels))
            self.gamma_ri = nn.Parameter(torch.zeros(channels))
            self.beta = nn.Parameter(torch.zeros(channels, dtype=CDTYPE))
        self.register_buffer("running_mean", torch.zeros(2, channels))
        self.register_buffer("running_cov", torch.stack([torch.ones(channels), torch.zeros(channels),
                                                         torch.ones(channels)]))  # Vrr, Vri, Vii

    def _whitening_matrix(self, vrr: torch.Tensor, vri: torch.Tensor, vii: torch.Tensor) -> torch.Tensor:
        """Per-channel ``V^{-1/2}`` as [C, 2, 2], determinant clamped."""
        vrr = vrr + self.eps
        vii = vii + self.eps
        det = (vrr * vii - vri * vri).clamp_min(self.min_det)
        s = det.sqrt()
        t = (vrr + vii + 2 * s).clamp_min(self.min_det).sqrt()
        inv = 1.0 / (s * t)
        row0 = torch.stack([(vii + s) * inv, -vri * inv], dim=-1)
        row1 = torch.stack([-vri * inv, (vrr + s) * inv], dim=-1)
        return torch.stack([row0, row1], dim=-2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Whiten complex ``z [B, C, F, T]`` per channel (batch statistics in training); same shape and dtype."""
        if z.dim() != 4:
            raise ValueError(f"ComplexWhitening2d expects [B, C, F, T], got {tuple(z.shape)}")
        c = z.shape[1]
        x = torch.view_as_real(z.to(CDTYPE))  # float32 [B, C, F, T, 2]
        if self.training:
            dims = (0, 2, 3)
            mean = x.mean(dim=dims)  # [C, 2]
            second = (x * x).mean(dim=dims)
            cross = (x[..., 0] * x[..., 1]).mean(dim=dims)
            vrr = (second[:, 0] - mean[:, 0] ** 2).clamp_min(0)
            vii = (second[:, 1] - mean[:, 1] ** 2).clamp_min(0)
            vri = cross - mean[:, 0] * mean[:, 1]
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.t())
                self.running_cov.mul_(1 - m).add_(m * torch.stack([vrr, vri, vii]))
        else:
            mean = self.running_mean.t()
            vrr, vri, vii = self.running_cov[0], self.running_cov[1], self.running_cov[2]
        w = self._whitening_matrix(vrr, vri, vii)  # [C, 2, 2]
        if self.affine:
            gamma = torch.stack([torch.stack([self.gamma_rr, self.gamma_ri], -1),
                                 torch.stack([self.gamma_ri, self.gamma_ii], -1)], -2)
            w = gamma @ w
            shift = torch.view_as_real(self.beta) - (w @ mean.unsqueeze(-1)).squeeze(-1)
        else:
            shift = -(w @ mean.unsqueeze(-1)).squeeze(-1)
        # out = W (x - mean) + beta per channel, written as W x + shift on the (Re, Im) pairs
        col_re = w[:, :, 0].view(1, c, 1, 1, 2)  # how Re(x) feeds (Re, Im) of the output
        col_im = w[:, :, 1].view(1, c, 1, 1, 2)
        y = x[..., 0:1] * col_re + x[..., 1:2] * col_im + shift.view(1, c, 1, 1, 2)
        return torch.view_as_complex(y).to(z.dtype)


class ComplexMultiheadAttention(nn.Module):
    """Multi-head attention on complex tokens ``[N, L, C]``.

    ``score = Re(q^H k) / sqrt(d)`` is the real inner product of the (Re, Im) forms; a real softmax
    turns it into convex weights, which mix the complex values, so phases are averaged coherently.
    ``window`` > 0 limits each query to keys within ``window`` positions (local attention): memory is
    ``L * (2 window + 1)`` instead of ``L^2``, which keeps long files encodable.
    """

    def __init__(self, channels: int, num_heads: int = 2, window: int = 0) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.channels, self.num_heads, self.window = channels, num_heads, window
        self.head_dim = channels // num_heads
        self.qkv = ComplexConv2d(channels, 3 * channels, 1, bias=False)
        self.out = ComplexConv2d(channels, channels, 1, bias=True)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``[N, heads, L, head_dim]`` from tokens ``[N, L, C]``."""
        n, length, c = x.shape
        qkv = self.qkv(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1)  # [N, 3C, L]
        qkv = qkv.view(n, 3, self.num_heads, self.head_dim, length).permute(1, 0, 2, 4, 3)
        return qkv[0], qkv[1], qkv[2]  # each [N, h, L, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over complex tokens: ``[N, L, C] -> [N, L, C]``."""
        n, length, c = x.shape
        q, k, v = self._project(x)
        scale = 1.0 / math.sqrt(self.head_dim)
        if self.window <= 0 or self.window >= length:
            scores = (q.conj() @ k.transpose(-1, -2)).real * scale  # Re(q^H k): [N, h, L, L]
            weights = torch.softmax(scores, dim=-1)
            out = weights.to(v.dtype) @ v
        else:
            w = self.window
            kp = F.pad(torch.view_as_real(k), (0, 0, 0, 0, w, w))  # pad along L
            vp = F.pad(torch.view_as_real(v), (0, 0, 0, 0, w, w))
            kw = torch.view_as_complex(kp.unfold(2, 2 * w + 1, 1).permute(0, 1, 2, 5, 3, 4).contiguous())
            vw = torch.view_as_complex(vp.unfold(2, 2 * w + 1, 1).permute(0, 1, 2, 5, 3, 4).contiguous())
            scores = (q.conj().unsqueeze(-2) * kw).sum(-1).real * scale  # [N, h, L, 2w+1]
            pos = torch.arange(length, device=x.device).unsqueeze(1) + torch.arange(-w, w + 1, device=x.device)
            valid = (pos >= 0) & (pos < length)
            scores = scores.masked_fill(~valid, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out = (weights.unsqueeze(-1).to(vw.dtype) * vw).sum(-2)
        out = out.permute(0, 1, 3, 2).reshape(n, c, length, 1)  # heads back into channels
        return self.out(out).squeeze(-1).transpose(1, 2)


class AxialAttention2d(nn.Module):
    """Pre-norm residual attention along one axis of ``[B, C, F, T]``: ``axis="time"`` or ``"freq"``."""

    def __init__(self, channels: int, axis: str, num_heads: int = 2, window: int = 0,
                 num_positions: int = 0) -> None:
        super().__init__()
        if axis not in ("time", "freq"):
            raise ValueError(f"axis must be 'time' or 'freq', got {axis!r}")
        self.axis = axis
        self.norm = ComplexWhitening2d(channels)
        self.attn = ComplexMultiheadAttention(channels, num_heads, window)
        # a learnable complex embedding per frequency bin tells frequency attention where it is
        self.pos = nn.Parameter(torch.zeros(channels, num_positions, dtype=CDTYPE)) if num_positions else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend along ``self.axis`` and add the input: complex ``[B, C, F, T] -> [B, C, F, T]``."""
        b, c, f, t = x.shape
        h = self.norm(x)
        if self.pos is not None:
            if self.pos.shape[1] != f:
                raise ValueError(f"frequency attention built for {self.pos.shape[1]} bins, got {f}")
            h = h + self.pos.view(1, c, f, 1)
        if self.axis == "time":
            tokens = h.permute(0, 2, 3, 1).reshape(b * f, t, c)
            out = self.attn(tokens).view(b, f, t, c).permute(0, 3, 1, 2)
        else:
            tokens = h.permute(0, 3, 2, 1).reshape(b * t, f, c)
            out = self.attn(tokens).view(b, t, f, c).permute(0, 3, 2, 1)
        return x + out
