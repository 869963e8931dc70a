"""Rate-distortion curves, Bjontegaard deltas and the Pareto frontier.

BD-rate (Bjontegaard 2001; VCEG-M33) compares two R-D curves by the average difference of their
log-rates at equal quality: both curves are written as log10(rate) as a function of quality,
interpolated with a monotone piecewise cubic (PCHIP, as in the later VCEG-AL22/JVET practice in
place of the original cubic polynomial fit) and integrated over the quality range where both
exist. ``BD-rate = (10 ** mean_difference - 1) * 100`` percent: negative means the test codec
needs fewer bits for the same quality. BD-quality is the mirror: mean quality difference at equal
log-rate over the overlapping rate range, in the metric's unit.

A curve that does not overlap the reference over at least ``min_overlap`` of the narrower curve's
span gets NaN with the reason, never an extrapolated number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

MIN_OVERLAP = 0.25  # share of the narrower curve's span that the overlap must cover


@dataclass
class RDPoint:
    """One operating point on an R-D plane: its rates (kbps), the mean quality and its CI, the items behind it."""

    codec: str
    op: str
    nominal_kbps: float
    measured_kbps: float
    mean: float
    ci_lo: float = math.nan
    ci_hi: float = math.nan
    n_items: int = 0


@dataclass
class Curve:
    """One codec's R-D points for one metric, sorted by measured rate."""

    codec: str
    points: list[RDPoint] = field(default_factory=list)

    def sorted(self) -> "Curve":
        """A copy with only plottable points (finite rate and mean), by increasing measured rate."""
        pts = [p for p in self.points if math.isfinite(p.measured_kbps) and math.isfinite(p.mean)]
        return Curve(self.codec, sorted(pts, key=lambda p: p.measured_kbps))

    @property
    def rates(self) -> np.ndarray:
        """Measured kbps of the points, in order (the x of the curve)."""
        return np.array([p.measured_kbps for p in self.points], dtype=np.float64)

    @property
    def qualities(self) -> np.ndarray:
        """Mean quality of the points, in order (the y of the curve)."""
        return np.array([p.mean for p in self.points], dtype=np.float64)


@dataclass
class BDResult:
    """A Bjontegaard delta with the overlap it was integrated over, and why it is NaN or approximate."""

    value: float  # percent for BD-rate, metric units for BD-quality; NaN when not computable
    overlap_lo: float = math.nan
    overlap_hi: float = math.nan
    overlap_fraction: float = math.nan  # overlap / span of the narrower curve
    note: str = ""

    @property
    def ok(self) -> bool:
        """Whether a number could be computed (False: see ``note``)."""
        return math.isfinite(self.value)

    def as_dict(self) -> dict[str, float | str]:
        """Plain fields for JSON and tables."""
        return {"value": self.value, "overlap_lo": self.overlap_lo, "overlap_hi": self.overlap_hi,
                "overlap_fraction": self.overlap_fraction, "note": self.note}


def _prepare(x: ArrayLike, y: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Sort by x, drop non-finite points, require >= 2 distinct x. Returns (x, y, problem)."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 2:
        return xa, ya, f"{name} has {xa.size} usable point(s); at least 2 are needed"
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    if np.any(np.diff(xa) <= 0):
        return xa, ya, f"{name} is not strictly monotonic (two points share a value on the integration axis)"
    return xa, ya, ""


def _mean_gap(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
              min_overlap: float) -> BDResult:
    """Mean of (f2 - f1) over the overlap of the x ranges, with f PCHIP interpolants."""
    from scipy.interpolate import PchipInterpolator

    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    narrow = min(x1[-1] - x1[0], x2[-1] - x2[0])
    if hi <= lo:
        return BDResult(math.nan, lo, hi, 0.0, "curves do not overlap")
    fraction = (hi - lo) / narrow if narrow > 0 else 0.0
    if fraction < min_overlap:
        return BDResult(math.nan, lo, hi, fraction,
                        f"curves overlap over only {fraction:.0%} of the narrower curve (< {min_overlap:.0%})")
    f1 = PchipInterpolator(x1, y1, extrapolate=False)
    f2 = PchipInterpolator(x2, y2, extrapolate=False)
    gap = (f2.integrate(lo, hi) - f1.integrate(lo, hi)) / (hi - lo)
    note = "" if fraction >= 0.999 else f"overlap covers {fraction:.0%} of the narrower curve"
    return BDResult(float(gap), float(lo), float(hi), float(fraction), note)


def _monotone_note(rates: np.ndarray, quality: np.ndarray, name: str) -> str:
    """A warning when quality does not rise (or fall) strictly with rate: the delta is then approximate."""
    order = np.argsort(rates)
    q = quality[order]
    d = np.diff(q)
    if np.all(d > 0) or np.all(d < 0):
        return ""
    return f"{name}: quality is not monotonic in rate; the Bjontegaard delta is approximate"


def bd_rate(ref_rates: ArrayLike, ref_quality: ArrayLike, test_rates: ArrayLike, test_quality: ArrayLike, *,
            min_overlap: float = MIN_OVERLAP) -> BDResult:
    """BD-rate of the test curve against the reference curve, in percent (negative = fewer bits).

    Independent of the metric's direction: both curves are integrated over the same quality
    interval. Rates must be positive.
    """
    r1, q1 = np.asarray(ref_rates, float), np.asarray(ref_quality, float)
    r2, q2 = np.asarray(test_rates, float), np.asarray(test_quality, float)
    if np.any(r1[np.isfinite(r1)] <= 0) or np.any(r2[np.isfinite(r2)] <= 0):
        return BDResult(math.nan, note="rates must be positive")
    x1, y1, p1 = _prepare(q1, np.log10(r1), "reference curve")
    x2, y2, p2 = _prepare(q2, np.log10(r2), "test curve")
    if p1 or p2:
        return BDResult(math.nan, note=p1 or p2)
    res = _mean_gap(x1, y1, x2, y2, min_overlap)
    if res.ok:
        res.value = float((10.0 ** res.value - 1.0) * 100.0)
        notes = [n for n in (res.note, _monotone_note(r1, q1, "reference"), _monotone_note(r2, q2, "test")) if n]
        res.note = "; ".join(notes)
    return res


def bd_quality(ref_rates: ArrayLike, ref_quality: ArrayLike, test_rates: ArrayLike, test_quality: ArrayLike, *,
               min_overlap: float = MIN_OVERLAP) -> BDResult:
    """BD-quality: mean (test - reference) quality at equal log-rate, in the metric's unit.

    Positive means a higher metric value; whether that is better depends on the metric.
    """
    r1, q1 = np.asarray(ref_rates, float), np.asarray(ref_quality, float)
    r2, q2 = np.asarray(test_rates, float), np.asarray(test_quality, float)
    if np.any(r1[np.isfinite(r1)] <= 0) or np.any(r2[np.isfinite(r2)] <= 0):
        return BDResult(math.nan, note="rates must be positive")
    x1, y1, p1 = _prepare(np.log10(r1), q1, "reference curve")
    x2, y2, p2 = _prepare(np.log10(r2), q2, "test curve")
    if p1 or p2:
        return BDResult(math.nan, note=p1 or p2)
    res = _mean_gap(x1, y1, x2, y2, min_overlap)
    if math.isfinite(res.overlap_lo):  # report the overlap in kbps, not log10(kbps)
        res.overlap_lo, res.overlap_hi = 10.0 ** res.overlap_lo, 10.0 ** res.overlap_hi
    return res


def pareto_frontier(points: Sequence[RDPoint], higher_is_better: bool) -> list[RDPoint]:
    """Points not dominated by any other (lower-or-equal rate and better-or-equal quality, one strict).

    Returned sorted by measured rate: the best quality reachable at each rate across all codecs.
    """
    usable = [p for p in points if math.isfinite(p.measured_kbps) and math.isfinite(p.mean)]
    sign = 1.0 if higher_is_better else -1.0
    usable.sort(key=lambda p: (p.measured_kbps, -sign * p.mean))
    frontier: list[RDPoint] = []
    best = -math.inf
    for p in usable:
        q = sign * p.mean
        if q > best:
            frontier.append(p)
            best = q
    return frontier


def nearest_point(curve: Curve, rate_kbps: float, max_ratio: float | None = None) -> RDPoint | None:
    """The point of ``curve`` with measured rate closest to ``rate_kbps`` on a log scale.

    ``max_ratio`` (e.g. 1.25) rejects points more than that factor away: "comparable bitrate".
    """
    best, best_d = None, math.inf
    for p in curve.points:
        if not (math.isfinite(p.measured_kbps) and p.measured_kbps > 0 and rate_kbps > 0):
            continue
        d = abs(math.log(p.measured_kbps / rate_kbps))
        if d < best_d:
            best, best_d = p, d
    if best is not None and max_ratio is not None and best_d > math.log(max_ratio):
        return None
    return best
