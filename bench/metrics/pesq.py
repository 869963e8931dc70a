"""PESQ (ITU-T P.862) through python-pesq: ``pesq_wb`` (P.862.2) and ``pesq_nb`` (P.862 + P.862.1).

Backend: the ``pesq`` package (ludlows/PESQ, the ITU-T P.862 reference C code with a Python wrapper),
``pesq(fs, ref, deg, mode)``. Both values are MOS-LQO (unit "MOS"): wide band mapped by P.862.2
(range about 1.04 … 4.64), narrow band mapped by P.862.1 (about 1.02 … 4.55). Higher is better.

Input rate (pinned):
  * ``pesq_wb``: 16 kHz, mode "wb" (the only rate P.862.2 defines).
  * ``pesq_nb``: **16 kHz input, mode "nb"**. P.862 accepts 8 or 16 kHz in narrow-band mode (the IRS
    receive filter makes it narrow band, not the sampling rate). 16 kHz input is what python-pesq's and
    torchmetrics' reference values use (1.6072081327438354 on the python-pesq pair, reproduced bit-exactly
    here) and what most codec papers call; feeding the same pair resampled to 8 kHz gives 1.6654, a
    different number. Calling :func:`pesq_nb` directly with ``sample_rate_hz=8000`` is allowed.

python-pesq scales both signals by their joint peak before scoring. Items that cannot be scored give NaN
with a reason: no utterance detected in the reference (P.862's VAD), shorter than 1/4 s, a silent
reference or reconstruction (the C code divides by zero), non-finite samples.
Speech only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics._spectral import check_pair, screen
from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric


def _pesq_one(ref: np.ndarray, deg: np.ndarray, fs: int, mode: str, name: str) -> MetricValue:
    import pesq as pesq_backend

    if not np.any(ref):
        return failed(f"{name}: reference is silent (all zeros)")
    if not np.any(deg):
        return failed(f"{name}: reconstruction is silent (all zeros); P.862 cannot score it")
    try:
        return MetricValue(float(pesq_backend.pesq(fs, ref, deg, mode)))
    except pesq_backend.NoUtterancesError:
        return failed(f"{name}: no utterances detected in the reference (P.862 VAD)")
    except pesq_backend.BufferTooShortError:
        return failed(f"{name}: clip shorter than 1/4 s ({ref.shape[-1] / fs:.3f} s)")
    except (pesq_backend.PesqError, ValueError) as exc:
        return failed(f"{name}: backend error: {exc}")


def _pesq(preds: torch.Tensor, target: torch.Tensor, sample_rate_hz: int | None, mode: str, name: str,
          allowed_hz: tuple[int, ...]) -> list[MetricValue]:
    if sample_rate_hz not in allowed_hz:
        raise MetricError(f"{name} needs audio at {' or '.join(map(str, allowed_hz))} Hz, got {sample_rate_hz}")
    p, t = check_pair(preds, target, torch.float64)
    reasons = screen(p, t, min_samples=1, metric=name)
    p_np, t_np = p.cpu().numpy(), t.cpu().numpy()
    return [failed(r) if r else _pesq_one(t_np[i], p_np[i], int(sample_rate_hz), mode, name)
            for i, r in enumerate(reasons)]


def pesq_wb(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = 16000,
            items: Sequence[Any] | None = None, **options: Any) -> list[MetricValue]:
    """Wide-band PESQ (P.862.2 MOS-LQO) per item at 16 kHz."""
    return _pesq(preds, target, sample_rate_hz, "wb", "pesq_wb", (16000,))


def pesq_nb(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = 16000,
            items: Sequence[Any] | None = None, **options: Any) -> list[MetricValue]:
    """Narrow-band PESQ (P.862 raw score mapped by P.862.1 to MOS-LQO) per item, 16 kHz (or 8 kHz) input."""
    return _pesq(preds, target, sample_rate_hz, "nb", "pesq_nb", (16000, 8000))


_COMMON: dict[str, Any] = dict(higher_is_better=True, unit="MOS", domains=("speech",), min_duration_s=0.25,
               requires=("pesq",), batched=True, version="1")
register_metric(MetricSpec(
    name="pesq_wb", fn=pesq_wb, sample_rate_hz=16000, valid_range=(1.0, 4.65),
    source="ITU-T P.862.2 via python-pesq (ludlows/PESQ) mode 'wb'",
    description="wide-band PESQ MOS-LQO at 16 kHz", **_COMMON))
register_metric(MetricSpec(
    name="pesq_nb", fn=pesq_nb, sample_rate_hz=16000, valid_range=(1.0, 4.65),
    source="ITU-T P.862 + P.862.1 mapping via python-pesq mode 'nb', 16 kHz input",
    description="narrow-band PESQ MOS-LQO (16 kHz input, NB mode)", **_COMMON))
