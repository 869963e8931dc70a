"""Phase distances of AP-BWE ("APD"): group-delay deviation ``gdd``, ``ip_distance``, ``iaf_distance``.

Definition (yxlu-0102/AP-BWE ``cal_metrics.py`` @ a0486423, ``anti_wrapping_function`` and ``cal_apd``;
APCodec's ``phase_loss`` builds the same quantities):

  * STFT as in :mod:`bench.metrics.lsd`: n_fft = win = 2048, hop 512, periodic Hann, center=True, reflect
    padding; phase φ[f, t] = angle(X[f, t]) (angle(0) = 0).
  * anti-wrapping w(x) = x - round(x / 2π)·2π, which maps a phase difference into [-π, π].
  * ``ip_distance`` (APD_IP, instantaneous phase):  mean_t sqrt(mean_f w(φ_p - φ_t)²)
  * ``gdd`` (APD_GD, group delay): GD[f] = φ[f-1] - φ[f] for f ≥ 1 and GD[0] = -φ[0];
    value = mean_f sqrt(mean_t w(GD_t - GD_p)²)   — note: time first, then frequency, as upstream.
  * ``iaf_distance`` (APD_IAF, instantaneous angular frequency): IAF[t] = φ[t-1] - φ[t], IAF[0] = -φ[0];
    value = mean_t sqrt(mean_f w(IAF_t - IAF_p)²).

Unit: radians, range [0, π]; lower is better; 0 for identical signals; symmetric in preds/target.
Computed in float64. The differences are taken directly (upstream multiplies by a banded matrix, which
is the same arithmetic but O(N²) memory in the number of frames).

EuleroDec's paper reports a "GDD" whose formula is not public; this is AP-BWE's code-backed APD_GD, the
only one we could pin. An item whose target or preds is all zeros has no phase: NaN with a reason.
Runs at the item's comparison rate (fixed STFT size in samples).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from bench.metrics._spectral import (
    check_pair,
    merge,
    min_samples_for_stft,
    require_rate,
    screen,
    stft_blocks,
    zero_bad_rows,
)
from bench.metrics.base import MetricSpec, MetricValue, register_metric

N_FFT = 2048
HOP = 512
KINDS = ("ip", "gd", "iaf")


def anti_wrap(x: torch.Tensor) -> torch.Tensor:
    """Wrap a phase difference into [-π, π] (AP-BWE's anti-wrapping function)."""
    two_pi = 2.0 * math.pi
    return x - torch.round(x / two_pi) * two_pi


def _backward_diff(phase: torch.Tensor, dim: int) -> torch.Tensor:
    """D[k] = φ[k-1] - φ[k] along ``dim`` with D[0] = -φ[0]."""
    first = -phase.narrow(dim, 0, 1)
    rest = phase.narrow(dim, 0, phase.shape[dim] - 1) - phase.narrow(dim, 1, phase.shape[dim] - 1)
    return torch.cat([first, rest], dim=dim)


def phase_distances(preds: torch.Tensor, target: torch.Tensor, kinds: Sequence[str] = KINDS, n_fft: int = N_FFT,
                    hop_length: int = HOP) -> dict[str, torch.Tensor]:
    """Batched APD_IP / APD_GD / APD_IAF ``[B]`` each (radians) for ``preds``/``target`` ``[B, T]``.

    Accumulated over STFT blocks: per-frame sums for IP and IAF (IAF carries the last phase frame of the
    previous block), per-bin sums of squares over time for GD.
    """
    n = preds.shape[0]
    ip_sum = preds.new_zeros(n)
    iaf_sum = preds.new_zeros(n)
    gd_sq: torch.Tensor | None = None
    prev: torch.Tensor | None = None
    frames = 0
    for spec in stft_blocks(torch.cat([preds, target], dim=0), n_fft, hop_length):
        phase = torch.angle(spec)  # [2B, F, n]
        pp, pt = phase[:n], phase[n:]
        if "ip" in kinds:
            ip_sum = ip_sum + anti_wrap(pp - pt).square().mean(dim=-2).sqrt().sum(dim=-1)
        if "gd" in kinds:
            d = anti_wrap(_backward_diff(pt, -2) - _backward_diff(pp, -2)).square().sum(dim=-1)
            gd_sq = d if gd_sq is None else gd_sq + d
        if "iaf" in kinds:
            # IAF[0] = -phi[0] is the backward difference against a zero phase frame
            carry = torch.zeros_like(phase[..., :1]) if prev is None else prev
            with_prev = torch.cat([carry, phase], dim=-1)
            iaf = with_prev[..., :-1] - with_prev[..., 1:]
            d = anti_wrap(iaf[n:] - iaf[:n])
            iaf_sum = iaf_sum + d.square().mean(dim=-2).sqrt().sum(dim=-1)
            prev = phase[..., -1:]
        frames += phase.shape[-1]
    out: dict[str, torch.Tensor] = {}
    if "ip" in kinds:
        out["ip"] = ip_sum / frames
    if "gd" in kinds:
        assert gd_sq is not None  # stft_blocks yields at least one block
        out["gd"] = (gd_sq / frames).sqrt().mean(dim=-1)
    if "iaf" in kinds:
        out["iaf"] = iaf_sum / frames
    return out


def _phase_metric(kind: str, name: str) -> Callable[..., list[MetricValue]]:
    """The metric function for one APD ``kind`` ("ip", "gd", "iaf"), named ``name`` in reasons."""

    def metric(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = None,
               items: Sequence[Any] | None = None, dtype: torch.dtype = torch.float64,
               **options: Any) -> list[MetricValue]:
        require_rate(sample_rate_hz, name)
        p, t = check_pair(preds, target, dtype)
        reasons = screen(p, t, min_samples=min_samples_for_stft(N_FFT), metric=name)
        t_zero = (t == 0).all(dim=-1).tolist()
        p_zero = (p == 0).all(dim=-1).tolist()
        for i in range(len(reasons)):
            if reasons[i] is None and t_zero[i]:
                reasons[i] = f"{name}: target is all zeros, its phase is undefined"
            elif reasons[i] is None and p_zero[i]:
                reasons[i] = f"{name}: preds is all zeros, its phase is undefined"
        if all(reasons):
            return merge([math.nan] * len(reasons), reasons)
        p, t = zero_bad_rows(p, reasons), zero_bad_rows(t, reasons)
        with torch.no_grad():
            return merge(phase_distances(p, t, kinds=(kind,))[kind], reasons)

    metric.__name__ = name
    metric.__doc__ = f"AP-BWE APD_{kind.upper()} per item (radians); see the module docstring."
    return metric


gdd = _phase_metric("gd", "gdd")
ip_distance = _phase_metric("ip", "ip_distance")
iaf_distance = _phase_metric("iaf", "iaf_distance")

_SOURCE = "AP-BWE cal_metrics.py cal_apd (n_fft 2048, hop 512, anti-wrapped phase differences)"
for _name, _fn, _what in (("gdd", gdd, "group-delay deviation (APD_GD)"),
                          ("ip_distance", ip_distance, "instantaneous-phase distance (APD_IP)"),
                          ("iaf_distance", iaf_distance, "instantaneous-angular-frequency distance (APD_IAF)")):
    register_metric(MetricSpec(
        name=_name,
        fn=_fn,
        higher_is_better=False,
        unit="rad",
        sample_rate_hz=None,
        valid_range=(0.0, math.pi),
        version="1",
        source=_SOURCE,
        description=f"{_what}, at the item's comparison rate",
        on_device=True,
    ))
