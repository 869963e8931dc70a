"""STOI and extended STOI (ESTOI) through pystoi.

Definitions: STOI, Taal, Hendriks, Heusdens, Jensen, IEEE TASLP 19(7) 2011; ESTOI, Jensen & Taal, IEEE
TASLP 24(11) 2016. Backend ``pystoi.stoi(x=target, y=preds, fs_sig, extended)`` (mpariente/pystoi 0.4.x,
a port of the authors' MATLAB ``stoi.m``/``estoi.m``): 10 kHz, 256-sample frames (hop 128), 15 one-third
octave bands from 150 Hz, 384 ms segments, frames more than 40 dB below the loudest reference frame removed.

Sample rate (pinned): the spec's native rate is 10 kHz, the rate the standard works at, so the harness's one
resampler (soxr) does the conversion and pystoi's internal resampler is not used. Called directly at another
rate, the function passes the rate to pystoi, which resamples internally. On the python-pesq pair both
routes give 0.6739 to 4 d.p. (16 kHz straight into pystoi: 0.6739177895331301, the MATLAB/pystoi reference;
soxr to 10 kHz first: 0.67392087).

Unitless; both are averaged correlation coefficients, in practice in [0, 1] (they can dip slightly below 0); higher is better.
NaN with a reason for a silent reference, for too few non-silent frames (pystoi's warning, where it would
return 1e-5) and for non-finite samples. Speech only.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics._spectral import check_pair, require_rate, screen
from bench.metrics.base import MetricSpec, MetricValue, failed, register_metric

STOI_RATE_HZ = 10000


def _stoi_one(ref: np.ndarray, deg: np.ndarray, fs: int, extended: bool, name: str) -> MetricValue:
    from pystoi import stoi as pystoi_stoi

    if not np.any(ref):
        return failed(f"{name}: reference is silent (all zeros)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(ref, deg, fs, extended=extended))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            return failed(f"{name}: fewer than 30 non-silent frames (384 ms) after silent-frame removal")
    return MetricValue(value)


def _stoi(preds: torch.Tensor, target: torch.Tensor, sample_rate_hz: int | None, extended: bool,
          name: str) -> list[MetricValue]:
    fs = require_rate(sample_rate_hz, name)
    p, t = check_pair(preds, target, torch.float64)
    reasons = screen(p, t, min_samples=1, metric=name)
    p_np, t_np = p.cpu().numpy(), t.cpu().numpy()
    return [failed(r) if r else _stoi_one(t_np[i], p_np[i], fs, extended, name) for i, r in enumerate(reasons)]


def stoi(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = STOI_RATE_HZ,
         items: Sequence[Any] | None = None, **options: Any) -> list[MetricValue]:
    """Short-time objective intelligibility per item (Taal et al. 2011)."""
    return _stoi(preds, target, sample_rate_hz, False, "stoi")


def estoi(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = STOI_RATE_HZ,
          items: Sequence[Any] | None = None, **options: Any) -> list[MetricValue]:
    """Extended STOI per item (Jensen & Taal 2016)."""
    return _stoi(preds, target, sample_rate_hz, True, "estoi")


_COMMON: dict[str, Any] = dict(higher_is_better=True, unit="", sample_rate_hz=STOI_RATE_HZ, domains=("speech",),
               min_duration_s=0.4, requires=("pystoi",), version="1")
register_metric(MetricSpec(
    name="stoi", fn=stoi, valid_range=(-1.0, 1.0),
    source="Taal et al. 2011 via pystoi (port of stoi.m), 10 kHz",
    description="short-time objective intelligibility", **_COMMON))
register_metric(MetricSpec(
    name="estoi", fn=estoi, valid_range=(-1.0, 1.0),
    source="Jensen & Taal 2016 via pystoi extended=True (port of estoi.m), 10 kHz",
    description="extended short-time objective intelligibility", **_COMMON))
