"""Scale-invariant signal-to-distortion ratio (SI-SDR), zero-mean, in dB.

Definition (Le Roux, Wisdom, Erdogan, Hershey, "SDR - half-baked or well done?", ICASSP 2019, eq. 1-2;
identical to DAC's ``SISDRLoss`` with its defaults ``zero_mean=True, scaling=True`` up to its 1e-8 epsilons
and the sign, descript-audio-codec ``dac/nn/loss.py``):

    s = target - mean(target),   ŝ = preds - mean(preds)
    α = <ŝ, s> / ||s||²,         e_target = α·s,   e_res = ŝ - e_target
    SI-SDR = 10·log10(||e_target||² / ||e_res||²)            [dB, higher is better]

Computed in float64 whatever the input dtype. No epsilon is added: an item whose target or preds is
silent (all samples equal after mean removal) is NaN with a reason, because the ratio is undefined.
The value is clipped to ±300 dB so that identity (e_res = 0 exactly) stays a finite best score and an
exactly orthogonal estimate a finite worst one.

It runs at whatever rate the signals have (sample rate does not enter the formula).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from bench.metrics._spectral import check_pair, merge, screen, zero_bad_rows
from bench.metrics.base import MetricSpec, MetricValue, register_metric

SI_SDR_LIMIT_DB = 300.0


def si_sdr_db(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batched zero-mean SI-SDR in dB, float64 ``[B]``; NaN where target or preds is silent."""
    p, t = check_pair(preds, target, torch.float64)
    t0 = t - t.mean(dim=-1, keepdim=True)
    p0 = p - p.mean(dim=-1, keepdim=True)
    t_energy = (t0 * t0).sum(dim=-1)
    p_energy = (p0 * p0).sum(dim=-1)
    alpha = (p0 * t0).sum(dim=-1) / t_energy
    e_target = alpha.unsqueeze(-1) * t0
    e_res = p0 - e_target
    signal = (e_target * e_target).sum(dim=-1)
    noise = (e_res * e_res).sum(dim=-1)
    value = 10.0 * torch.log10(signal / noise)
    value = value.clamp(-SI_SDR_LIMIT_DB, SI_SDR_LIMIT_DB)
    # 0/0 cases: identity of an all-zero residual and a silent target or estimate
    value = torch.where(noise == 0, torch.full_like(value, SI_SDR_LIMIT_DB), value)
    value = torch.where(signal == 0, torch.full_like(value, -SI_SDR_LIMIT_DB), value)
    silent = (t_energy == 0) | (p_energy == 0)
    return torch.where(silent, torch.full_like(value, math.nan), value)


def si_sdr(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = None,
           items: Sequence[Any] | None = None, **options: Any) -> list[MetricValue]:
    """Zero-mean SI-SDR (dB) per item; NaN + reason for silent target/preds or non-finite samples."""
    p, t = check_pair(preds, target, torch.float64)
    reasons = screen(p, t, min_samples=2, metric="si_sdr")
    p, t = zero_bad_rows(p, reasons), zero_bad_rows(t, reasons)
    t_silent = (t - t.mean(dim=-1, keepdim=True)).abs().amax(dim=-1) == 0
    p_silent = (p - p.mean(dim=-1, keepdim=True)).abs().amax(dim=-1) == 0
    for i in range(p.shape[0]):
        if reasons[i]:
            continue
        if t_silent[i]:
            reasons[i] = "si_sdr: target is silent (constant), SI-SDR undefined"
        elif p_silent[i]:
            reasons[i] = "si_sdr: preds is silent (constant), SI-SDR undefined"
    return merge(si_sdr_db(p, t), reasons)


SPEC = register_metric(MetricSpec(
    name="si_sdr",
    fn=si_sdr,
    higher_is_better=True,
    unit="dB",
    sample_rate_hz=None,
    valid_range=(-SI_SDR_LIMIT_DB, SI_SDR_LIMIT_DB),
    version="1",
    source="Le Roux et al. 2019 (zero-mean SI-SDR); = descript-audio-codec SISDRLoss defaults (sign flipped, no eps)",
    description="scale-invariant SDR after mean removal, float64, clipped to ±300 dB",
    min_duration_s=0.0,
    on_device=True,
))
