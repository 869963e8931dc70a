"""BD-rate, BD-quality and the Pareto frontier on curves with known answers."""

import math

import numpy as np
import pytest

from bench.reports import rd

RATES = np.array([6.0, 8.0, 12.0, 16.0, 24.0])
QUALITY = 10.0 + 6.0 * np.log2(RATES) + np.array([0.0, 0.3, -0.2, 0.1, 0.0])  # monotone, not a straight line


def test_bd_rate_of_a_curve_against_itself_is_zero():
    res = rd.bd_rate(RATES, QUALITY, RATES, QUALITY)
    assert res.ok and abs(res.value) < 1e-9
    assert res.overlap_fraction == pytest.approx(1.0)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.1, 1.25, 2.0, 3.0])
def test_bd_rate_of_scaled_rates_is_the_factor_as_percent(factor):
    res = rd.bd_rate(RATES, QUALITY, RATES * factor, QUALITY)
    assert res.ok
    assert res.value == pytest.approx((factor - 1.0) * 100.0, abs=1e-9)


def test_bd_rate_does_not_depend_on_metric_direction():
    distance = 5.0 - 0.2 * QUALITY  # lower is better, falls with rate
    res = rd.bd_rate(RATES, distance, RATES * 1.5, distance)
    assert res.value == pytest.approx(50.0, abs=1e-9)


def test_bd_quality_of_a_shifted_curve_is_the_shift():
    assert rd.bd_quality(RATES, QUALITY, RATES, QUALITY).value == pytest.approx(0.0, abs=1e-12)
    res = rd.bd_quality(RATES, QUALITY, RATES, QUALITY + 1.7)
    assert res.value == pytest.approx(1.7, abs=1e-9)
    assert res.overlap_lo == pytest.approx(6.0) and res.overlap_hi == pytest.approx(24.0)


def test_bd_rate_only_over_the_overlap():
    # the test curve covers only the upper half of the reference's quality range: same law, so 0 %
    res = rd.bd_rate(RATES, QUALITY, RATES[2:], QUALITY[2:])
    assert res.value == pytest.approx(0.0, abs=1.0)
    assert res.overlap_lo == pytest.approx(QUALITY[2])
    # a pchip through the points gives a different number than a cubic polynomial would; sanity only
    assert "overlap covers" in res.note or res.overlap_fraction >= 0.999


def test_curves_that_do_not_overlap_get_nan_with_a_reason():
    res = rd.bd_rate(RATES, QUALITY, RATES, QUALITY + 100.0)
    assert not res.ok and "do not overlap" in res.note
    res = rd.bd_rate(RATES, QUALITY, RATES, QUALITY + 0.9 * (QUALITY.max() - QUALITY.min()))
    assert not res.ok and "overlap over only" in res.note


def test_too_few_points_or_bad_rates():
    res = rd.bd_rate(RATES[:1], QUALITY[:1], RATES, QUALITY)
    assert not res.ok and "at least 2" in res.note
    res = rd.bd_rate(RATES, QUALITY, [6.0, 8.0, 12.0], [20.0, 20.0, 25.0])
    assert not res.ok and "monotonic" in res.note
    res = rd.bd_rate(RATES, QUALITY, RATES * 0.0, QUALITY)
    assert not res.ok and "positive" in res.note
    # NaN points are dropped, not propagated (the interpolant then has one knot fewer)
    q = QUALITY.copy()
    q[1] = np.nan
    assert rd.bd_rate(RATES, QUALITY, RATES * 2, q).value == pytest.approx(100.0, abs=5.0)


def test_two_point_curves_work():
    res = rd.bd_rate([6, 12], [20.0, 26.0], [3, 6], [20.0, 26.0])
    assert res.value == pytest.approx(-50.0, abs=1e-9)


def _pts(spec):
    return [rd.RDPoint("c", f"p{i}", r, r, q) for i, (r, q) in enumerate(spec)]


def test_pareto_frontier_higher_is_better():
    pts = _pts([(6, 10), (8, 9), (12, 14), (16, 13), (24, 14), (3, 5)])
    front = rd.pareto_frontier(pts, higher_is_better=True)
    assert [(p.measured_kbps, p.mean) for p in front] == [(3, 5), (6, 10), (12, 14)]


def test_pareto_frontier_lower_is_better():
    pts = _pts([(6, 1.0), (8, 1.2), (12, 0.5), (16, 0.6), (24, 0.2), (float("nan"), 0.0)])
    front = rd.pareto_frontier(pts, higher_is_better=False)
    assert [(p.measured_kbps, p.mean) for p in front] == [(6, 1.0), (12, 0.5), (24, 0.2)]


def test_nearest_point_respects_the_ratio():
    cur = rd.Curve("c", _pts([(6, 1), (12, 2), (24, 3)]))
    assert rd.nearest_point(cur, 11.0).op == "p1"
    assert rd.nearest_point(cur, 40.0, max_ratio=1.25) is None
    assert math.isclose(rd.nearest_point(cur, 26.0, max_ratio=1.25).measured_kbps, 24)
