"""Bootstrap CIs (coverage, clusters), paired tests and Holm's correction."""

import numpy as np
import pytest

from bench.reports import stats


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(123)
    trials, n, true_mean = 200, 40, 3.0
    hits = 0
    for t in range(trials):
        x = rng.normal(true_mean, 2.0, size=n)
        ci = stats.bootstrap_ci(x, n_boot=600, seed=t)
        hits += ci.lo <= true_mean <= ci.hi
    coverage = hits / trials
    assert 0.88 <= coverage <= 0.99, coverage


def test_cluster_bootstrap_keeps_coverage_where_the_item_bootstrap_does_not():
    rng = np.random.default_rng(7)
    trials, n_clusters, per_cluster = 150, 20, 5
    clusters = [f"spk{c}" for c in range(n_clusters) for _ in range(per_cluster)]
    hit_cluster = hit_naive = 0
    for t in range(trials):
        effects = np.repeat(rng.normal(0, 2.0, n_clusters), per_cluster)
        x = effects + rng.normal(0, 1.0, n_clusters * per_cluster)
        c = stats.bootstrap_ci(x, clusters, n_boot=500, seed=t)
        naive = stats.bootstrap_ci(x, None, n_boot=500, seed=t)
        hit_cluster += c.lo <= 0.0 <= c.hi
        hit_naive += naive.lo <= 0.0 <= naive.hi
        assert c.n_clusters == n_clusters and c.n_items == n_clusters * per_cluster
    assert 0.85 <= hit_cluster / trials <= 0.99, hit_cluster / trials
    assert hit_naive / trials < hit_cluster / trials - 0.15  # items of a speaker are not independent


def test_bootstrap_ci_edge_cases():
    ci = stats.bootstrap_ci([1.0, np.nan, 3.0])
    assert ci.mean == pytest.approx(2.0) and ci.n_items == 2
    one = stats.bootstrap_ci([5.0])
    assert one.mean == 5.0 and np.isnan(one.lo) and np.isnan(one.hi)
    same_cluster = stats.bootstrap_ci([1.0, 2.0, 3.0], ["a", "a", "a"])
    assert np.isnan(same_cluster.lo) and same_cluster.n_clusters == 1
    empty = stats.bootstrap_ci([])
    assert np.isnan(empty.mean) and empty.n_items == 0
    with pytest.raises(ValueError):
        stats.bootstrap_means([1.0, 2.0], ["a"])


def test_holm_matches_hand_computation():
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adj = stats.holm([0.5, float("nan"), 0.9])
    assert adj[0] == pytest.approx(1.0) and np.isnan(adj[1]) and adj[2] == pytest.approx(1.0)


def test_wilcoxon_is_run_on_cluster_means():
    rng = np.random.default_rng(0)
    d = 1.0 + 0.1 * rng.standard_normal(60)
    assert stats.wilcoxon_p(d) < 1e-6
    # three speakers: at most 2/2**3 = 0.25 however many items each has
    assert stats.wilcoxon_p(d, [f"s{i % 3}" for i in range(60)]) >= 0.25 - 1e-12
    assert stats.wilcoxon_p(np.zeros(10)) == 1.0
    assert stats.wilcoxon_p(rng.standard_normal(200)) > 0.01


def test_paired_bootstrap_p_and_one_sided_bounds():
    rng = np.random.default_rng(1)
    shifted = 0.5 + 0.3 * rng.standard_normal(50)
    assert stats.paired_bootstrap_p(shifted, n_boot=999) < 0.01
    assert stats.paired_bootstrap_p(np.zeros(5)) == 1.0
    lo = stats.one_sided_bound(shifted, confidence=0.95, side="lower", n_boot=999)
    hi = stats.one_sided_bound(shifted, confidence=0.95, side="upper", n_boot=999)
    assert 0.3 < lo < shifted.mean() < hi < 0.7
    assert stats.one_sided_bound(np.zeros(4), side="lower") == 0.0
    assert np.isnan(stats.one_sided_bound([np.nan]))


def test_signed_rank_matches_scipy_without_ties():
    from scipy import stats as st

    rng = np.random.default_rng(3)
    for n in (5, 12, 30, 45):
        d = rng.normal(0.3, 1.0, n)
        assert stats.signed_rank_p(d) == pytest.approx(st.wilcoxon(d, method="exact").pvalue, rel=1e-9)
    d = rng.normal(0.2, 1.0, 80)
    assert stats.signed_rank_p(d) == pytest.approx(st.wilcoxon(d, method="approx").pvalue, rel=1e-9)
    # ties handled exactly and quickly (scipy would run a permutation test)
    tied = np.round(rng.normal(0.5, 1.0, 40))
    assert 0.0 < stats.signed_rank_p(tied) < 0.2
    assert stats.signed_rank_p(np.ones(9)) == pytest.approx(2 / 2**9)
