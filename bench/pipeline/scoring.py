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

Length policy: the reconstruction must cover the reference. Lengths may differ by at most
:func:`length_tolerance` samples, the larger of ``LENGTH_TOLERANCE_REL`` (1 %) of the reference and
``length_tolerance_s`` (default ``LENGTH_TOLERANCE_S``, 50 ms). Where a delay was estimated the
difference left after removing it counts too, so a decode that is late by its codec delay and one
frame longer passes. The slack covers one codec frame of end padding (an MP3 frame is 1152 samples,
36 ms at 32 kHz; Opus frames are 20-40 ms; neural codecs pad to one hop, ~10-25 ms); the delay itself
is bounded by the alignment's ``max_lag_s``. Within the tolerance both signals are trimmed to the
shorter one and a note says so; beyond it the pair is not scored: every applicable metric is NaN with
a reason naming both lengths (a truncated decode trimmed to its own length would otherwise score as a
perfect copy). Channels: both signals are mixed to mono; a channel-count difference is noted.
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
LENGTH_TOLERANCE_REL = 0.01  # a length difference up to 1 % of the reference is padding, not truncation
LENGTH_TOLERANCE_S = 0.05  # ... or up to 50 ms, whichever is larger (one codec frame; see the module doc)


@dataclass
class Skip:
    """A metric that does not apply to an item (no result row; reports say why)."""

    reason: str


@dataclass
class PairResult:
    """Per-metric values and skips of one pair, the lag used, notes, and a pair-level failure reason."""

    values: dict[str, MetricValue] = field(default_factory=dict)
    skipped: dict[str, Skip] = field(default_factory=dict)
    lag_samples: int | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # set when the pair as a whole could not be scored (every value is NaN)


def length_tolerance(n_ref: int, sample_rate_hz: int, tolerance_s: float = LENGTH_TOLERANCE_S) -> int:
    """Largest length difference (samples) treated as padding: max(1 % of ``n_ref``, ``tolerance_s``)."""
    return max(round(LENGTH_TOLERANCE_REL * n_ref), round(tolerance_s * sample_rate_hz))


def length_mismatch(n_ref: int, n_deg: int, sample_rate_hz: int, *, lag: int = 0,
                    tolerance_s: float = LENGTH_TOLERANCE_S) -> str | None:
    """Why ``n_deg`` samples cannot stand for a reference of ``n_ref`` samples, or None when they can.

    The difference may be within :func:`length_tolerance` either as is or after removing ``lag``
    (the samples by which the reconstruction is late: a decoder's delay makes it that much longer).
    """
    tol = length_tolerance(n_ref, sample_rate_hz, tolerance_s)
    diff = n_deg - n_ref
    if min(abs(diff), abs(diff - lag)) <= tol:
        return None
    return (f"length mismatch: ref {n_ref} samples ({n_ref / sample_rate_hz:.3f} s), deg {n_deg} samples "
            f"({n_deg / sample_rate_hz:.3f} s) at {sample_rate_hz} Hz, beyond the {tol}-sample tolerance "
            f"(max of {LENGTH_TOLERANCE_REL:.0%} and {tolerance_s * 1000:g} ms); truncated or padded, not scored")


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
    """Remove a delay: drop ``lag`` leading samples of ``deg`` (or of ``ref`` when negative), then cut to one length."""
    if lag > 0:
        deg = deg[lag:]
    elif lag < 0:
        ref = ref[-lag:]
    n = min(ref.shape[-1], deg.shape[-1])
    return ref[:n], deg[:n]


def _channels(x: np.ndarray, what: str) -> int:
    """Channel count of ``[C, T]`` or ``[T]`` audio; ValueError for any other shape."""
    if x.ndim not in (1, 2):
        raise ValueError(f"{what} audio must be [C, T] or [T], got shape {tuple(x.shape)}")
    return 1 if x.ndim == 1 else int(x.shape[0])


def _mono(x: np.ndarray) -> np.ndarray:
    """Mix ``[C, T]`` to ``[T]`` float32 (``[T]`` passes through)."""
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=0) if x.ndim == 2 else x


def _channel_notes(ref: np.ndarray, deg: np.ndarray) -> list[str]:
    """A note when the channel counts differ (both are mixed to mono); ValueError on a bad shape."""
    c_ref, c_deg = _channels(ref, "reference"), _channels(deg, "reconstruction")
    return [] if c_ref == c_deg else [f"channels differ: ref {c_ref}, deg {c_deg} (both mixed to mono)"]


def _fail_all(out: PairResult, metrics: Sequence[MetricSpec], domain: Any, has_transcript: bool,
              reason: str, lag: int | None) -> PairResult:
    """Mark every applicable metric failed with ``reason`` (inapplicable ones stay skipped)."""
    out.error = reason
    for spec in metrics:
        ok, why = spec.applies_to(domain, has_transcript)
        if not ok:
            out.skipped[spec.name] = Skip(why)
        else:
            extra = {"lag_samples": lag} if spec.needs_reference and lag is not None else {}
            out.values[spec.name] = failed(reason, **extra)
    return out


def _score_metric(spec: MetricSpec, ref: np.ndarray, deg: np.ndarray, rate: int, item: Any,
                  options: dict[str, Any]) -> MetricValue:
    """One metric on a prepared pair at its rate: NaN with the reason for a too-short or non-finite clip."""
    m = min(ref.shape[-1], deg.shape[-1])
    if m < max(1, int(spec.min_duration_s * rate)):
        return failed(f"clip too short for {spec.name}: {m / rate:.3f} s < {spec.min_duration_s} s")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        return failed("audio contains NaN/Inf samples")
    preds = torch.from_numpy(np.ascontiguousarray(deg[:m]))[None]
    target = torch.from_numpy(np.ascontiguousarray(ref[:m]))[None]
    return compute(spec, preds, target, items=[item], sample_rate_hz=rate, **options)[0]


def score_pair(ref: np.ndarray, deg: np.ndarray, sample_rate_hz: int, metrics: Sequence[MetricSpec], *,
               item: Any = None, align: str = "xcorr", max_lag_s: float = DEFAULT_MAX_LAG_S,
               metric_options: dict[str, dict[str, Any]] | None = None,
               length_tolerance_s: float = LENGTH_TOLERANCE_S) -> PairResult:
    """Score ``deg`` against ``ref`` (both ``[C, T]`` or ``[T]`` at ``sample_rate_hz``) with each metric.

    A length difference beyond :func:`length_tolerance` (``length_tolerance_s``) fails the pair:
    ``PairResult.error`` and every applicable value carry the reason (see the module doc).
    """
    if align not in ALIGN_POLICIES:
        raise ValueError(f"unknown alignment policy {align!r}; choose from {ALIGN_POLICIES}")
    if not (sample_rate_hz > 0 and max_lag_s >= 0 and length_tolerance_s >= 0):  # `not >=` also rejects NaN
        raise ValueError(f"need sample_rate_hz > 0, max_lag_s >= 0, length_tolerance_s >= 0; got "
                         f"{sample_rate_hz}, {max_lag_s}, {length_tolerance_s}")
    metric_options = metric_options or {}
    out = PairResult()
    ref, deg = np.asarray(ref), np.asarray(deg)
    out.notes = _channel_notes(ref, deg)
    ref_m, deg_m = _mono(ref), _mono(deg)
    domain = getattr(item, "domain", None)
    has_transcript = bool(getattr(item, "transcript", None))

    lag = 0
    if align != "none" and any(m.needs_reference for m in metrics):
        lag = estimate_lag(ref_m, deg_m, int(max_lag_s * sample_rate_hz))
        out.lag_samples = lag
    mismatch = length_mismatch(ref_m.shape[-1], deg_m.shape[-1], sample_rate_hz, lag=lag, tolerance_s=length_tolerance_s)
    if mismatch:
        return _fail_all(out, metrics, domain, has_transcript, mismatch, out.lag_samples)
    if ref_m.shape[-1] != deg_m.shape[-1]:
        out.notes.append(f"lengths differ: ref {ref_m.shape[-1]}, deg {deg_m.shape[-1]} samples "
                         "(within tolerance; trimmed to the shorter)")
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
        value = _score_metric(spec, *resampled[key], rate, item, metric_options.get(spec.name, {}))
        if spec.needs_reference and align != "none":
            value.extra.setdefault("lag_samples", lag)
        out.values[spec.name] = value
    return out
