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

Several reconstructions of one reference: :func:`score_pairs` gives what :func:`score_pair` gives
pair by pair, but calls each ``on_device`` metric (the pure-torch ones) once per group of pairs that
score against the same reference segment, as one ``[B, T]`` batch on the scoring device.

Time: every value carries its metric call's seconds (``MetricValue.compute_s``, a batch's time over
its size) and ``PairResult.prep_s`` the seconds spent mixing, aligning and resampling.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.fft
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
    prep_s: float = 0.0  # seconds of mixing, alignment and resampling (the metric calls are in compute_s)


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
    max_lag = min(max_lag, n - 1)  # a longer lag leaves nothing to compare
    # Only lags within +-max_lag are read, so a transform of n + max_lag points (not the 2n a full
    # linear correlation needs) has no wrap-around at those lags; next_fast_len keeps it cheap (about
    # 4x less work than the next power of two above 2n for a 14 s utterance).
    size = scipy.fft.next_fast_len(n + max_lag + 1, real=True)
    xc = scipy.fft.irfft(scipy.fft.rfft(b, size) * np.conj(scipy.fft.rfft(a, size)), size)
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


def _too_short_or_bad(spec: MetricSpec, ref: np.ndarray, deg: np.ndarray, rate: int) -> MetricValue | None:
    """The failure of a prepared pair that cannot reach the metric (too short, non-finite), else None."""
    m = min(ref.shape[-1], deg.shape[-1])
    if m < max(1, int(spec.min_duration_s * rate)):
        return failed(f"clip too short for {spec.name}: {m / rate:.3f} s < {spec.min_duration_s} s")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        return failed("audio contains NaN/Inf samples")
    return None


def _score_metric(spec: MetricSpec, ref: np.ndarray, deg: np.ndarray, rate: int, item: Any,
                  options: dict[str, Any]) -> MetricValue:
    """One metric on a prepared pair at its rate: NaN with the reason for a too-short or non-finite clip."""
    bad = _too_short_or_bad(spec, ref, deg, rate)
    if bad is not None:
        return bad
    m = min(ref.shape[-1], deg.shape[-1])
    preds = torch.from_numpy(np.ascontiguousarray(deg[:m]))[None]
    target = torch.from_numpy(np.ascontiguousarray(ref[:m]))[None]
    return compute(spec, preds, target, items=[item], sample_rate_hz=rate, **options)[0]


def _check_args(sample_rate_hz: int, align: str, max_lag_s: float, length_tolerance_s: float) -> None:
    """ValueError for an unknown alignment policy or a non-positive rate / negative lag or tolerance."""
    if align not in ALIGN_POLICIES:
        raise ValueError(f"unknown alignment policy {align!r}; choose from {ALIGN_POLICIES}")
    if not (sample_rate_hz > 0 and max_lag_s >= 0 and length_tolerance_s >= 0):  # `not >=` also rejects NaN
        raise ValueError(f"need sample_rate_hz > 0, max_lag_s >= 0, length_tolerance_s >= 0; got "
                         f"{sample_rate_hz}, {max_lag_s}, {length_tolerance_s}")


@dataclass
class _Prepared:
    """One pair after mixing, alignment and the length check: what every metric of the pair starts from.

    ``ref_a``/``deg_a`` are the aligned signals (intrusive metrics), ``ref_m[:n]``/``deg_m[:n]`` the
    unaligned ones; ``ref_start`` is where ``ref_a`` starts in ``ref_m`` (the reference segment a group
    of reconstructions shares). ``resampled`` caches the pair per (rate, aligned).
    """

    out: PairResult
    ref_m: np.ndarray
    deg_m: np.ndarray
    ref_a: np.ndarray
    deg_a: np.ndarray
    ref_start: int
    lag: int
    align: str
    resampled: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def signals(self, spec: MetricSpec) -> tuple[np.ndarray, np.ndarray, int]:
        """The (ref, deg) pair ``spec`` scores, and the reference's start in the mono reference."""
        if spec.needs_reference:
            return self.ref_a, self.deg_a, self.ref_start
        n = min(self.ref_m.shape[-1], self.deg_m.shape[-1])
        return self.ref_m[:n], self.deg_m[:n], 0

    def finish(self, spec: MetricSpec, value: MetricValue) -> None:
        """Record ``value`` as the pair's result of ``spec`` (with the lag when the metric was aligned)."""
        if spec.needs_reference and self.align != "none":
            value.extra.setdefault("lag_samples", self.lag)
        self.out.values[spec.name] = value


def _prepare(ref: np.ndarray, deg: np.ndarray, sample_rate_hz: int, metrics: Sequence[MetricSpec], item: Any,
             align: str, max_lag_s: float, length_tolerance_s: float) -> _Prepared:
    """Mix to mono, estimate (and under ``xcorr`` apply) the lag, check lengths; a mismatch fails the pair.

    ``out.prep_s`` holds the seconds this took; resampling adds to it later.
    """
    start = time.perf_counter()
    out = PairResult()
    ref, deg = np.asarray(ref), np.asarray(deg)
    out.notes = _channel_notes(ref, deg)
    ref_m, deg_m = _mono(ref), _mono(deg)
    lag = 0
    if align != "none" and any(m.needs_reference for m in metrics):
        lag = estimate_lag(ref_m, deg_m, int(max_lag_s * sample_rate_hz))
        out.lag_samples = lag
    prep = _Prepared(out, ref_m, deg_m, ref_m, deg_m, 0, lag, align)
    mismatch = length_mismatch(ref_m.shape[-1], deg_m.shape[-1], sample_rate_hz, lag=lag, tolerance_s=length_tolerance_s)
    if mismatch:
        _fail_all(out, metrics, getattr(item, "domain", None), bool(getattr(item, "transcript", None)),
                  mismatch, out.lag_samples)
    else:
        if ref_m.shape[-1] != deg_m.shape[-1]:
            out.notes.append(f"lengths differ: ref {ref_m.shape[-1]}, deg {deg_m.shape[-1]} samples "
                             "(within tolerance; trimmed to the shorter)")
        if align == "xcorr":
            prep.ref_a, prep.deg_a = apply_lag(ref_m, deg_m, lag)
            prep.ref_start = max(0, -lag)
    out.prep_s = time.perf_counter() - start
    return prep


class _RefCache:
    """Resampled reference segments, shared by the pairs of one reference: (start, length, rate) -> signal."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.segments: dict[tuple[int, int, int], np.ndarray] = {}

    def pair_at(self, prep: _Prepared, spec: MetricSpec) -> tuple[np.ndarray, np.ndarray]:
        """The pair ``spec`` scores, at its rate, resampled once per pair and rate (time added to prep_s)."""
        rate = spec.sample_rate_hz or self.sample_rate_hz
        key = (rate, spec.needs_reference)
        if key not in prep.resampled:
            start = time.perf_counter()
            r, d, ref_start = prep.signals(spec)
            seg = (ref_start, r.shape[-1], rate)
            if seg not in self.segments:
                self.segments[seg] = resample(r, self.sample_rate_hz, rate)
            prep.resampled[key] = (self.segments[seg], resample(d, self.sample_rate_hz, rate))
            prep.out.prep_s += time.perf_counter() - start
        return prep.resampled[key]


def _applies(prep: _Prepared, spec: MetricSpec, item: Any) -> bool:
    """Whether ``spec`` applies to the item; records a Skip in the pair's result when it does not."""
    ok, why = spec.applies_to(getattr(item, "domain", None), bool(getattr(item, "transcript", None)))
    if not ok:
        prep.out.skipped[spec.name] = Skip(why)
    return ok


def _score_one_by_one(preps: Sequence[_Prepared], metrics: Sequence[MetricSpec], refs: _RefCache, item: Any,
                      options: dict[str, dict[str, Any]]) -> None:
    """Each metric on each scorable pair, one call per pair (on the CPU, as the metric gets it)."""
    for prep in preps:
        for spec in metrics:
            if _applies(prep, spec, item):
                rate = spec.sample_rate_hz or refs.sample_rate_hz
                prep.finish(spec, _score_metric(spec, *refs.pair_at(prep, spec), rate, item,
                                                options.get(spec.name, {})))


def _skip_set_level(out: PairResult, metrics: Sequence[MetricSpec]) -> PairResult:
    """Skip the set-level metrics (FAD): they have one value per set of items, computed by ``bench.pipeline.set_level``."""
    for spec in metrics:
        if spec.set_level:
            out.skipped[spec.name] = Skip(f"{spec.name} is a set-level metric (one value per codec point and "
                                          "stratum over a set of items), not scored per item")
    return _in_metric_order(out, metrics)


def score_pair(ref: np.ndarray, deg: np.ndarray, sample_rate_hz: int, metrics: Sequence[MetricSpec], *,
               item: Any = None, align: str = "xcorr", max_lag_s: float = DEFAULT_MAX_LAG_S,
               metric_options: dict[str, dict[str, Any]] | None = None,
               length_tolerance_s: float = LENGTH_TOLERANCE_S) -> PairResult:
    """Score ``deg`` against ``ref`` (both ``[C, T]`` or ``[T]`` at ``sample_rate_hz``) with each metric.

    A length difference beyond :func:`length_tolerance` (``length_tolerance_s``) fails the pair:
    ``PairResult.error`` and every applicable value carry the reason (see the module doc). Each value
    carries its call's ``compute_s``; ``PairResult.prep_s`` is the alignment and resampling time.
    """
    _check_args(sample_rate_hz, align, max_lag_s, length_tolerance_s)
    per_item = [m for m in metrics if not m.set_level]
    prep = _prepare(ref, deg, sample_rate_hz, per_item, item, align, max_lag_s, length_tolerance_s)
    if prep.out.error is None:
        _score_one_by_one([prep], per_item, _RefCache(sample_rate_hz), item, metric_options or {})
    return _skip_set_level(prep.out, metrics) if len(per_item) < len(metrics) else prep.out


#: most preds samples in one batched call of a device metric on an accelerator: with the targets, the
#: STFTs of a call stay near ``bench.metrics._spectral.STFT_BLOCK_ELEMENTS`` (about 2 complex elements
#: per sample and window)
DEVICE_BATCH_SAMPLES = 4_000_000
#: ... and on the CPU: 0, one reconstruction a call. Measured (8 reconstructions of 10 s at 24 kHz, one
#: thread): one [8, T] call took 1.5-2x as long as eight [1, T] calls, its larger tensors leaving the
#: caches; a CPU gains nothing from batching these metrics.
CPU_BATCH_SAMPLES = 0


def _resolve_device(device: str) -> torch.device:
    """``device`` as a torch device; ValueError when it names CUDA and there is none."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"scoring device {device!r} asked for, but torch sees no CUDA device")
    return dev


@contextmanager
def _torch_threads(dev: torch.device) -> Iterator[None]:
    """On the CPU, one torch thread (as the scoring workers run): a row's sums are then split the same
    way whatever the batch, so a value does not depend on the items that shared its call."""
    if dev.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _groups(preps: Sequence[_Prepared], spec: MetricSpec, refs: _RefCache, item: Any
            ) -> dict[tuple[int, int, int, int], list[_Prepared]]:
    """The pairs ``spec`` applies to, grouped by the reference segment they score against and their length.

    The key is (segment start, segment length, rate, scored length): the pairs of a group compare the
    same reference samples, so the reference is resampled once and the group is one [B, T] batch.
    """
    groups: dict[tuple[int, int, int, int], list[_Prepared]] = {}
    rate = spec.sample_rate_hz or refs.sample_rate_hz
    for prep in preps:
        if not _applies(prep, spec, item):
            continue
        r, _, ref_start = prep.signals(spec)
        r_rs, d_rs = refs.pair_at(prep, spec)
        key = (ref_start, r.shape[-1], rate, min(r_rs.shape[-1], d_rs.shape[-1]))
        groups.setdefault(key, []).append(prep)
    return groups


def _score_batch(spec: MetricSpec, group: list[_Prepared], refs: _RefCache, item: Any,
                 options: dict[str, Any], dev: torch.device, batch_samples: int) -> None:
    """One metric over a group sharing its reference segment: one call per ``batch_samples`` of preds.

    A pair that cannot reach the metric (too short, non-finite) fails alone, with the reason
    :func:`score_pair` gives; each value's ``compute_s`` is its call's time over the call's batch size.
    """
    rate = spec.sample_rate_hz or refs.sample_rate_hz
    live: list[tuple[_Prepared, np.ndarray]] = []
    ref_rs = refs.pair_at(group[0], spec)[0]
    for prep in group:
        r, d = refs.pair_at(prep, spec)
        bad = _too_short_or_bad(spec, r, d, rate)
        if bad is not None:
            prep.finish(spec, bad)
        else:
            live.append((prep, d))
    if not live:
        return
    m = min(ref_rs.shape[-1], live[0][1].shape[-1])
    per_call = max(1, batch_samples // max(1, m))
    target_row = torch.from_numpy(np.ascontiguousarray(ref_rs[:m])).to(dev)
    for k in range(0, len(live), per_call):
        chunk = live[k:k + per_call]
        preds = torch.from_numpy(np.stack([d[:m] for _, d in chunk])).to(dev)
        target = target_row.unsqueeze(0).repeat(len(chunk), 1)
        values = compute(spec, preds, target, items=[item] * len(chunk), sample_rate_hz=rate, **options)
        for (prep, _), value in zip(chunk, values):
            prep.finish(spec, value)


def _in_metric_order(out: PairResult, metrics: Sequence[MetricSpec]) -> PairResult:
    """The pair's values and skips in the order of ``metrics`` (as :func:`score_pair` records them)."""
    out.values = {m.name: out.values[m.name] for m in metrics if m.name in out.values}
    out.skipped = {m.name: out.skipped[m.name] for m in metrics if m.name in out.skipped}
    return out


def score_pairs(ref: np.ndarray, degs: Sequence[np.ndarray], sample_rate_hz: int, metrics: Sequence[MetricSpec], *,
                item: Any = None, align: str = "xcorr", device: str = "cpu", max_lag_s: float = DEFAULT_MAX_LAG_S,
                metric_options: dict[str, dict[str, Any]] | None = None,
                length_tolerance_s: float = LENGTH_TOLERANCE_S, batch_samples: int | None = None) -> list[PairResult]:
    """Score several reconstructions of one reference: ``[score_pair(ref, d, ...) for d in degs]``, batched.

    Alignment, the length check, notes, failures and skips are those of :func:`score_pair`, pair by
    pair. Metrics whose spec says ``on_device`` run once per group of reconstructions that share their
    reference segment (same lag start and length; all of one item's reconstructions normally do), as
    one ``[B, T]`` batch on ``device`` with the reference repeated (at most ``batch_samples`` preds
    samples a call; default ``DEVICE_BATCH_SAMPLES`` on an accelerator, ``CPU_BATCH_SAMPLES`` on the
    CPU); the others run pair by pair on the CPU. On the CPU the batched calls run at one torch
    thread, as the scoring workers do, and give bit-identical values to :func:`score_pair` there
    whatever the batch; on CUDA they agree to float rounding.
    """
    _check_args(sample_rate_hz, align, max_lag_s, length_tolerance_s)
    dev = _resolve_device(device)
    if batch_samples is None:
        batch_samples = CPU_BATCH_SAMPLES if dev.type == "cpu" else DEVICE_BATCH_SAMPLES
    options = metric_options or {}
    per_item = [m for m in metrics if not m.set_level]
    preps = [_prepare(ref, d, sample_rate_hz, per_item, item, align, max_lag_s, length_tolerance_s) for d in degs]
    live = [p for p in preps if p.out.error is None]
    refs = _RefCache(sample_rate_hz)
    _score_one_by_one(live, [m for m in per_item if not m.on_device], refs, item, options)
    with _torch_threads(dev):
        for spec in (m for m in per_item if m.on_device):
            for group in _groups(live, spec, refs, item).values():
                _score_batch(spec, group, refs, item, options.get(spec.name, {}), dev, batch_samples)
    return [_skip_set_level(p.out, metrics) for p in preps]
