"""DAC's multi-scale STFT distance (log power L1 + magnitude L1), as a metric and a training loss.

Definition (descript-audio-codec ``dac/nn/loss.py`` ``MultiScaleSTFTLoss`` with its class defaults, the
same STFT as :mod:`bench.metrics.mel`):

for each window length w in (2048, 512): STFT with n_fft = win = w, hop = w // 4, periodic Hann,
``center=True`` with reflect padding; magnitude |X|;

    term_w = mean|log10(max(|X_p|, 1e-5)^2) - log10(max(|X_t|, 1e-5)^2)| + mean|(|X_p| - |X_t|)|

(means over frequency bins and frames; log_weight = mag_weight = 1, pow = 2, clamp_eps = 1e-5).
The distance is the sum over the two scales. Lower is better; 0 for identical signals. DAC's STFT params
take ``window_type=None``, which audiotools resolves to its default "hann" (periodic).

Runs at the rate of the signals it gets (the item's comparison rate), like the mel distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from bench.metrics._spectral import (
    check_pair,
    min_samples_for_stft,
    require_rate,
    score_screened,
    stft_blocks,
)
from bench.metrics.base import MetricSpec, MetricValue, register_metric


@dataclass(frozen=True)
class STFTDistanceConfig:
    """Parameters of DAC's ``MultiScaleSTFTLoss`` (class defaults)."""

    window_lengths: tuple[int, ...] = (2048, 512)
    hop_divisor: int = 4
    pow: float = 2.0
    clamp_eps: float = 1e-5
    mag_weight: float = 1.0
    log_weight: float = 1.0

    @property
    def min_samples(self) -> int:
        """Shortest signal the largest window accepts (reflect padding needs more than half a window)."""
        return min_samples_for_stft(max(self.window_lengths))


class MultiScaleSTFTDistance(torch.nn.Module):
    """Differentiable, batched multi-scale STFT distance; ``[B, T]`` or ``[B, C, T]`` in, ``[B]`` out."""

    def __init__(self, config: STFTDistanceConfig | None = None) -> None:
        super().__init__()
        self.config = config or STFTDistanceConfig()

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distance per item ``[B]``, summed over the scales; channels are averaged into their item."""
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in shape")
        channels = preds.shape[1] if preds.ndim == 3 else 1
        p = preds.reshape(-1, preds.shape[-1])
        t = target.reshape(-1, target.shape[-1]).to(p.dtype)
        cfg = self.config
        if p.shape[-1] < cfg.min_samples:
            raise ValueError(f"signal of {p.shape[-1]} samples is shorter than the {cfg.min_samples} samples "
                             f"the {max(cfg.window_lengths)}-sample window needs")
        n = p.shape[0]
        both = torch.cat([p, t], dim=0)
        total = torch.zeros(n, dtype=p.dtype, device=p.device)
        for w in cfg.window_lengths:
            log_sum = p.new_zeros(n)
            mag_sum = p.new_zeros(n)
            count = 0
            for spec in stft_blocks(both, w, w // cfg.hop_divisor):
                mag = spec.abs()
                mp, mt = mag[:n], mag[n:]
                if cfg.log_weight:
                    lp = mp.clamp(min=cfg.clamp_eps).pow(cfg.pow).log10()
                    lt = mt.clamp(min=cfg.clamp_eps).pow(cfg.pow).log10()
                    log_sum = log_sum + (lp - lt).abs().sum(dim=(-2, -1))
                if cfg.mag_weight:
                    mag_sum = mag_sum + (mp - mt).abs().sum(dim=(-2, -1))
                count += mag.shape[-2] * mag.shape[-1]
            total = total + cfg.log_weight * log_sum / count + cfg.mag_weight * mag_sum / count
        return total.reshape(-1, channels).mean(dim=-1)


def stft_distance(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = None,
                  items: Sequence[Any] | None = None, config: STFTDistanceConfig | None = None,
                  dtype: torch.dtype = torch.float32, **options: Any) -> list[MetricValue]:
    """DAC 2-scale STFT distance per item (float32 like DAC); NaN + reason for too-short or non-finite items.

    The formula does not use the sample rate; it is accepted (and checked) for a uniform interface.
    """
    require_rate(sample_rate_hz, "stft_distance")
    cfg = config or STFTDistanceConfig()
    p, t = check_pair(preds, target, dtype)
    return score_screened(p, t, min_samples=cfg.min_samples, metric="stft_distance",
                          compute=MultiScaleSTFTDistance(cfg))


SPEC = register_metric(MetricSpec(
    name="stft_distance",
    fn=stft_distance,
    higher_is_better=False,
    unit="log10 power + mag",
    sample_rate_hz=None,
    valid_range=(0.0, math.inf),
    version="1",
    source="descript-audio-codec MultiScaleSTFTLoss class defaults (windows 2048, 512; pow 2; eps 1e-5)",
    description="DAC 2-scale STFT distance at the item's comparison rate",
    on_device=True,
))
