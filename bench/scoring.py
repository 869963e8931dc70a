"""Scoring one reference/degraded pair: the shared pipeline of ``bench run`` and ``bench score``.

For each metric: decide applicability (domain, transcript), mix to mono, align (policy below),
resample both signals to the metric's native rate with the harness's one resampler (soxr),
trim to equal length and call the metric. Failures become NaN with a reason.

Alignment policy (``align=``):
  * ``"xcorr"`` (default): estimate one constant lag between reference and reconstruction by
    FFT cross-correlation within +-``max_lag_s``, shift the reconstruction by it, trim both, and
    record the lag (``extra["lag_samples"]``). Codecs in this harness are sample aligned, so the
    lag is normally 0; the policy protects scores of externally produced files. A lag is applied
    only where the normalised cross-correlation peak reaches ``MIN_ALIGN_CORRELATION`` (0.3):
    below that the waveforms do not follow each other and any "delay" would be noise.
  * ``"report"``: estimate and record the lag but do not apply it.
  * ``"none"``: neither estimate nor apply.
Only intrusive metrics (``needs_reference``) are aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from bench.audio import resample
from bench.metrics.base import MetricSpec, MetricValue, compute, failed

ALIGN_POLICIES = ("xcorr", "report", "none")
DEFAULT_MAX_LAG_S = 0.25
MIN_ALIGN_CORRELATION = 0.3  # normalised cross-correlation a delay estimate needs to be applied


@dataclass
class Skip:
    """A metric that does not apply to an item (no result row; reports say why)."""

    reason: str


@dataclass
class PairResult:
    values: dict[str, MetricValue] = field(default_factory=dict)
    skipped: dict[str, Skip] = field(default_factory=dict)
    lag_samples: int | None = None


def estimate_lag(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> int:
    """Lag (in samples) by which ``deg`` trails ``ref``, from the peak of their cross-correlation.

    Positive means the degraded signal is late. Returns 0 for silent signals.
    """
    n = min(ref.shape[-1], deg.shape[-1])
    if n == 0 or max_lag <= 0:
        return 0
    a = ref[:n].astype(np.float64)
    b = deg[:n].astype(np.float64)
    if not np.any(a) or not np.any(b):
        return 0
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([xc[: max_lag + 1], xc[size - max_lag :]])
    best = int(lags[int(np.argmax(vals))])
    peak_corr = float(vals.max()) / float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    # Keep zero lag unless the peak is clearly better than it, and only trust a peak that is a real
    # correlation: a reconstruction that does not follow the waveform (an early neural codec, heavy
    # noise) has a random argmax, and shifting by it would only add an arbitrary error.
    if vals[0] >= 0.98 * vals.max() or peak_corr < MIN_ALIGN_CORRELATION:
        return 0
    return best


def apply_lag(ref: np.ndarray, deg: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    if lag > 0:
        deg = deg[lag:]
    elif lag < 0:
        ref = ref[-lag:]
    n = min(ref.shape[-1], deg.shape[-1])
    return ref[:n], deg[:n]


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=0) if x.ndim == 2 else x


def score_pair(ref: np.ndarray, deg: np.ndarray, sample_rate_hz: int, metrics: Sequence[MetricSpec], *,
               item: Any = None, align: str = "xcorr", max_lag_s: float = DEFAULT_MAX_LAG_S,
               metric_options: dict[str, dict[str, Any]] | None = None) -> PairResult:
    """Score ``deg`` against ``ref`` (both ``[C, T]`` or ``[T]`` at ``sample_rate_hz``) with each metric."""
    if align not in ALIGN_POLICIES:
        raise ValueError(f"unknown alignment policy {align!r}; choose from {ALIGN_POLICIES}")
    metric_options = metric_options or {}
    out = PairResult()
    ref_m, deg_m = _mono(ref), _mono(deg)
    domain = getattr(item, "domain", None)
    has_transcript = bool(getattr(item, "transcript", None))

    lag = 0
    if align != "none" and any(m.needs_reference for m in metrics):
        lag = estimate_lag(ref_m, deg_m, int(max_lag_s * sample_rate_hz))
        out.lag_samples = lag
    ref_a, deg_a = apply_lag(ref_m, deg_m, lag) if align == "xcorr" else (ref_m, deg_m)
    n = min(ref_m.shape[-1], deg_m.shape[-1])
    resampled: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}

    for spec in metrics:
        ok, why = spec.applies_to(domain, has_transcript)
        if not ok:
            out.skipped[spec.name] = Skip(why)
            continue
        aligned = spec.needs_reference
        r, d = (ref_a, deg_a) if aligned else (ref_m[:n], deg_m[:n])
        rate = spec.sample_rate_hz or sample_rate_hz
        key = (rate, aligned)
        if key not in resampled:
            resampled[key] = (resample(r, sample_rate_hz, rate), resample(d, sample_rate_hz, rate))
        r_rs, d_rs = resampled[key]
        m = min(r_rs.shape[-1], d_rs.shape[-1])
        if m < max(1, int(spec.min_duration_s * rate)):
            value = failed(f"clip too short for {spec.name}: {m / rate:.3f} s < {spec.min_duration_s} s")
        elif not (np.isfinite(r_rs).all() and np.isfinite(d_rs).all()):
            value = failed("audio contains NaN/Inf samples")
        else:
            preds = torch.from_numpy(np.ascontiguousarray(d_rs[:m]))[None]
            target = torch.from_numpy(np.ascontiguousarray(r_rs[:m]))[None]
            value = compute(spec, preds, target, items=[item], sample_rate_hz=rate,
                            **metric_options.get(spec.name, {}))[0]
        if spec.needs_reference and align != "none":
            value.extra.setdefault("lag_samples", lag)
        out.values[spec.name] = value
    return out
