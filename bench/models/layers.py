"""Building blocks of the DAC family: Snake activation and weight-normalised convolutions.

Weight normalisation uses ``torch.nn.utils.parametrizations.weight_norm`` (the current API; the old
``torch.nn.utils.weight_norm`` hook is deprecated). The parametrised weight is stored as
``weight.original0`` (magnitude g) and ``weight.original1`` (direction v) in the state dict.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake: ``x + sin^2(alpha x) / alpha`` (Ziyin et al. 2020), a periodic inductive bias for audio."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


class Snake1d(nn.Module):
    """Snake with one learnable ``alpha`` per channel, on ``[B, C, T]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply Snake channel-wise: ``[B, C, T] -> [B, C, T]``."""
        return snake(x, self.alpha)


def WNConv1d(*args: Any, **kwargs: Any) -> nn.Conv1d:  # noqa: N802 - reads like a layer class
    """``nn.Conv1d`` (same arguments) with weight normalisation; ``[B, C_in, T] -> [B, C_out, T']``."""
    return cast(nn.Conv1d, weight_norm(nn.Conv1d(*args, **kwargs)))


def WNConvTranspose1d(*args: Any, **kwargs: Any) -> nn.ConvTranspose1d:  # noqa: N802
    """``nn.ConvTranspose1d`` (same arguments) with weight normalisation, for the decoders' upsampling."""
    return cast(nn.ConvTranspose1d, weight_norm(nn.ConvTranspose1d(*args, **kwargs)))


def WNConv2d(*args: Any, **kwargs: Any) -> nn.Conv2d:  # noqa: N802
    """``nn.Conv2d`` (same arguments) with weight normalisation (discriminators)."""
    return cast(nn.Conv2d, weight_norm(nn.Conv2d(*args, **kwargs)))


def _centre_crop(x: torch.Tensor, length: int) -> torch.Tensor:
    extra = x.shape[-1] - length
    if extra <= 0:
        return x
    left = extra // 2
    return x[..., left : left + length]


class ResidualUnit(nn.Module):
    """Snake -> dilated conv (k=7) -> Snake -> conv (k=1), plus the input (centre-cropped if needed)."""

    def __init__(self, channels: int, dilation: int = 1, kernel_size: int = 7) -> None:
        super().__init__()
        pad = ((kernel_size - 1) * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(channels),
            WNConv1d(channels, channels, kernel_size=kernel_size, dilation=dilation, padding=pad),
            Snake1d(channels),
            WNConv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block: ``[B, C, T] -> [B, C, T']`` (``T' = T`` with the default symmetric padding)."""
        y = self.block(x)
        return _centre_crop(x, y.shape[-1]) + y


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9) at ``in_channels``, then a strided conv to ``out_channels``.

    Kernel ``2*stride`` with padding ``ceil(stride/2)`` maps a length divisible by ``stride`` to exactly
    ``length / stride`` frames, for even and odd strides alike.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
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
        """Downsample: ``[B, in_channels, T] -> [B, out_channels, T / stride]``."""
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake, transposed conv upsampling by ``stride``, then residual units (dilations 1, 3, 9).

    ``output_padding = stride % 2`` makes the output exactly ``length * stride`` for odd strides too
    (the released DAC code loses one sample per odd-stride block, which shortens 24/16 kHz outputs).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
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
        """Upsample: ``[B, in_channels, T] -> [B, out_channels, T * stride]``."""
        return self.block(x)


def init_conv_weights(module: nn.Module) -> None:
    """Zero the biases of 1-D convs and keep PyTorch's default (Kaiming-uniform) weights.

    This is the initialisation the released DAC models effectively got: their ``init_weights`` draws
    ``trunc_normal_(std=0.02)`` into ``module.weight``, but under the old weight-norm hook that tensor
    is recomputed from ``weight_g``/``weight_v`` at every forward pass, so only the zeroed biases
    survive. Applying std 0.02 for real shrinks the encoder's signal path by ~20x at the 1-channel input
    conv and more at each block; we measured it collapsing every codebook to a single code in training.
    """
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and module.bias is not None:
        if module.bias.is_meta:
            return
        nn.init.zeros_(module.bias)


def check_config_fields(cls: type, d: dict[str, Any], what: str) -> None:
    """Refuse a card's config with fields the dataclass ``cls`` does not have (an error, never ignored)."""
    from dataclasses import fields

    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
