"""Delay alignment before intrusive metrics: finds real delays, ignores spurious ones."""

from __future__ import annotations

import numpy as np

from bench.registry import METRICS
from bench.pipeline.scoring import apply_lag, estimate_lag, score_pair


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    # low-pass and amplitude-modulate so it has structure like speech
    x = np.convolve(x, np.hanning(32) / 16, mode="same")
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / 16000) ** 2
    return (0.3 * x * env).astype(np.float32)


def test_estimates_known_delays_both_ways():
    ref = _speechlike(16000)
    for lag in (0, 7, 120, -45):
        deg = np.roll(ref, lag)
        assert estimate_lag(ref, deg, 400) == lag
        r, d = apply_lag(ref, deg, lag)
        if lag:
            inner = slice(abs(lag), -abs(lag))
            np.testing.assert_allclose(r[inner], d[inner], atol=1e-6)


def test_uncorrelated_output_is_not_shifted():
    ref = _speechlike(16000, 1)
    deg = _speechlike(16000, 2)  # same kind of signal, unrelated waveform
    assert estimate_lag(ref, deg, 4000) == 0


def test_score_pair_records_lag_and_recovers_the_score():
    ref = _speechlike(16000)
    late = np.concatenate([np.zeros(80, np.float32), ref])[:16000]
    spec = METRICS.get("si_sdr")
    aligned = score_pair(ref, late, 16000, [spec], align="xcorr").values["si_sdr"]
    raw = score_pair(ref, late, 16000, [spec], align="none").values["si_sdr"]
    assert aligned.extra["lag_samples"] == 80
    assert aligned.value > 40 > raw.value


def test_lag_search_matches_a_direct_linear_correlation_at_the_window_edges():
    """The short transform (n + max_lag points) must give the linear correlation at every searched lag:
    a wrap-around would show at the lags nearest +-max_lag, so the true delays sit there."""
    n, max_lag = 3001, 400
    ref = _speechlike(n, 3).astype(np.float64)
    for lag in (max_lag, -max_lag, max_lag - 1, -(max_lag - 1), 5):
        rng = np.random.default_rng(abs(lag))
        deg = np.zeros(n)
        if lag >= 0:
            deg[lag:] = ref[: n - lag]
        else:
            deg[:lag] = ref[-lag:]
        deg += 0.05 * rng.standard_normal(n)
        direct = {k: float(np.dot(deg[max(k, 0): n + min(k, 0)], ref[max(-k, 0): n - max(k, 0)]))
                  for k in range(-max_lag, max_lag + 1)}
        assert max(direct, key=direct.get) == lag
        assert estimate_lag(ref, deg, max_lag) == lag
    # a window nearly as long as the signal: with a transform of only n points the lags -600 and +400
    # would share one bin (n = 1000), and the search would answer +400
    short = ref[:1000]
    early = np.zeros(1000)
    early[:400] = short[600:]
    assert estimate_lag(short, early, 700) == -600
    # a window longer than the signal is cut to it, not folded onto itself
    assert estimate_lag(short, early, 5000) == -600
