"""Building blocks of the DAC family: Snake activation and weight-normalised convolutions.

Weight normalisation uses ``torch.nn.utils.parametrizations.weight_norm`` (the current API; the old
``torch.nn.utils.weight_norm`` hook is deprecated). The parametrised weight is stored as
``weight.original0`` (magnitude g) and ``weight.original1`` (direction v) in the state dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake: ``x + sin^2(alpha x) / alpha`` (Ziyin et al. 2020), a periodic inductive bias for audio."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


class Snake1d(nn.Module):
    """Snake with one learnable ``alpha`` per channel, on ``[B, C, T]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake(x, self.alpha)


def WNConv1d(*args, **kwargs) -> nn.Module:  # noqa: N802 - reads like a layer class
    """``nn.Conv1d`` with weight normalisation."""
    return weight_norm(nn.Conv1d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs) -> nn.Module:  # noqa: N802
    """``nn.ConvTranspose1d`` with weight normalisation."""
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


def WNConv2d(*args, **kwargs) -> nn.Module:  # noqa: N802
    """``nn.Conv2d`` with weight normalisation (discriminators)."""
    return weight_norm(nn.Conv2d(*args, **kwargs))


def _centre_crop(x: torch.Tensor, length: int) -> torch.Tensor:
    extra = x.shape[-1] - length
    if extra <= 0:
        return x
    left = extra // 2
    return x[..., left : left + length]


class ResidualUnit(nn.Module):
    """Snake -> dilated conv (k=7) -> Snake -> conv (k=1), plus the input (centre-cropped if needed)."""

    def __init__(self, channels: int, dilation: int = 1, kernel_size: int = 7):
        super().__init__()
        pad = ((kernel_size - 1) * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(channels),
            WNConv1d(channels, channels, kernel_size=kernel_size, dilation=dilation, padding=pad),
            Snake1d(channels),
            WNConv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return _centre_crop(x, y.shape[-1]) + y


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9) at ``in_channels``, then a strided conv to ``out_channels``.

    Kernel ``2*stride`` with padding ``ceil(stride/2)`` maps a length divisible by ``stride`` to exactly
    ``length / stride`` frames, for even and odd strides alike.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(in_channels, 1),
            ResidualUnit(in_channels, 3),
            ResidualUnit(in_channels, 9),
            Snake1d(in_channels),
            WNConv1d(in_channels, out_channels, kernel_size=2 * stride, stride=stride,
                     padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake, transposed conv upsampling by ``stride``, then residual units (dilations 1, 3, 9).

    ``output_padding = stride % 2`` makes the output exactly ``length * stride`` for odd strides too
    (the released DAC code loses one sample per odd-stride block, which shortens 24/16 kHz outputs).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(in_channels),
            WNConvTranspose1d(in_channels, out_channels, kernel_size=2 * stride, stride=stride,
                              padding=math.ceil(stride / 2), output_padding=stride % 2),
            ResidualUnit(out_channels, 1),
            ResidualUnit(out_channels, 3),
            ResidualUnit(out_channels, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def init_conv_weights(module: nn.Module) -> None:
    """DAC's initialisation: truncated normal (std 0.02) weights, zero biases, for every 1-D conv."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        weight = module.parametrizations.weight.original1 if hasattr(module, "parametrizations") else module.weight
        if weight.is_meta:  # shape-only models (parameter counts, shape checks) need no values
            return
        nn.init.trunc_normal_(weight, std=0.02)
        if hasattr(module, "parametrizations"):
            # keep g = ||v|| so the initial effective weight equals v
            with torch.no_grad():
                g = module.parametrizations.weight.original0
                dims = [d for d in range(weight.dim()) if d != 0]
                g.copy_(weight.norm(dim=dims, keepdim=True))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
