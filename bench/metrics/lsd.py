"""Log-spectral distance (LSD) as AP-BWE / APCodec compute it.

Definition (yxlu-0102/AP-BWE ``cal_metrics.py`` @ a0486423, ``stft`` and ``cal_lsd``):

  * STFT: n_fft = win = 2048, hop 512, periodic Hann (``torch.hann_window``), ``center=True`` with
    reflect padding; power P = |X|²;
  * L = log10(max(P, 1e-8))  — log10 of power, i.e. in **Bel** (no ×10, not dB);
  * LSD = mean over frames of sqrt(mean over frequency bins of (L_preds - L_target)²).

Computed in float64 (the float32 result differs by < 3e-6). Lower is better; 0 for identical signals;
symmetric in preds/target. The STFT size is fixed in samples whatever the rate, so it runs at the item's
comparison rate (AP-BWE evaluates at the dataset's rate) and values at different rates are not comparable.
Other papers (NVSR / ssr_eval) use a different STFT and epsilon under the same name; this is not that one.
"""

from __future__ import annotations

import math
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

N_FFT = 2048
HOP = 512
POWER_FLOOR = 1e-8


def log_spectral_distance(preds: torch.Tensor, target: torch.Tensor, n_fft: int = N_FFT,
                          hop_length: int = HOP) -> torch.Tensor:
    """Batched AP-BWE LSD ``[B]`` in the input's dtype; differentiable. Long inputs go in STFT blocks."""
    n = preds.shape[0]
    total = preds.new_zeros(n)
    frames = 0
    for spec in stft_blocks(torch.cat([preds, target], dim=0), n_fft, hop_length):
        log_power = spec.abs().square().clamp(min=POWER_FLOOR).log10()
        diff = log_power[:n] - log_power[n:]
        total = total + diff.square().mean(dim=-2).sqrt().sum(dim=-1)
        frames += spec.shape[-1]
    return total / frames


def lsd(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = None,
        items: Sequence[Any] | None = None, dtype: torch.dtype = torch.float64,
        **options: Any) -> list[MetricValue]:
    """AP-BWE log-spectral distance per item (Bel); NaN + reason for too-short or non-finite items."""
    require_rate(sample_rate_hz, "lsd")
    p, t = check_pair(preds, target, dtype)
    return score_screened(p, t, min_samples=min_samples_for_stft(N_FFT), metric="lsd",
                          compute=log_spectral_distance)


SPEC = register_metric(MetricSpec(
    name="lsd",
    fn=lsd,
    higher_is_better=False,
    unit="Bel",
    sample_rate_hz=None,
    valid_range=(0.0, math.inf),
    version="1",
    source="AP-BWE cal_metrics.py cal_lsd (n_fft 2048, hop 512, log10 power clamp 1e-8, RMS over freq, mean over frames)",
    description="log-spectral distance, AP-BWE/APCodec definition, at the item's comparison rate",
    on_device=True,
))
