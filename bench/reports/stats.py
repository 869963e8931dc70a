"""Statistics for reports and the gate: cluster bootstrap CIs, paired tests, Holm correction.

Why clusters: items from the same speaker (or the same music track) are not independent, so an
item-level bootstrap makes confidence intervals too narrow. We resample whole clusters (speaker or
track where the dataset knows them, else the item itself) with replacement and recompute the mean
over all items of the drawn clusters (the ratio estimator). With one item per cluster this is the
ordinary bootstrap.

Paired tests run on per-item differences averaged within each cluster, so the test's unit of
independence is the cluster as well: the Wilcoxon signed-rank test over cluster means, or a paired
cluster bootstrap. Many comparisons in one report are corrected with Holm's step-down method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_N_BOOT = 2000


@dataclass
class MeanCI:
    """A mean with a bootstrap confidence interval; ``lo``/``hi`` are NaN when no CI is possible."""

    mean: float
    lo: float
    hi: float
    n_items: int
    n_clusters: int

    def as_dict(self) -> dict[str, float | int]:
        """The fields under the summary table's column names."""
        return {"mean": self.mean, "ci_lo": self.lo, "ci_hi": self.hi,
                "n_items": self.n_items, "n_clusters": self.n_clusters}


def _cluster_sums(values: np.ndarray, clusters: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and counts (each item its own cluster when ``clusters`` is None)."""
    if clusters is None:
        return values.astype(np.float64), np.ones(len(values))
    if len(clusters) != len(values):
        raise ValueError(f"{len(clusters)} cluster labels for {len(values)} values")
    _, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values.astype(np.float64))
    counts = np.bincount(inverse).astype(np.float64)
    return sums, counts


def _clean(values: ArrayLike, clusters: Sequence[str] | None) -> tuple[np.ndarray, list[str] | None]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = np.isfinite(v)
    c = None if clusters is None else [str(x) for x, k in zip(clusters, keep) if k]
    return v[keep], c


def bootstrap_means(values: ArrayLike, clusters: Sequence[str] | None = None, *,
                    n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` cluster-bootstrap replicates of the mean (NaN values are dropped first)."""
    v, c = _clean(values, clusters)
    if v.size == 0:
        return np.full(n_boot, np.nan)
    sums, counts = _cluster_sums(v, c)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    return sums[idx].sum(axis=1) / counts[idx].sum(axis=1)


def bootstrap_ci(values: ArrayLike, clusters: Sequence[str] | None = None, *,
                 confidence: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> MeanCI:
    """Mean and two-sided percentile cluster-bootstrap CI. NaN values are ignored.

    Fewer than two clusters give no interval (``lo = hi = NaN``): a CI from one speaker would
    only describe that speaker.
    """
    v, c = _clean(values, clusters)
    n_clusters = len(set(c)) if c is not None else v.size
    if v.size == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0, 0)
    mean = float(v.mean())
    if n_clusters < 2:
        return MeanCI(mean, math.nan, math.nan, int(v.size), n_clusters)
    reps = bootstrap_means(v, c, n_boot=n_boot, seed=seed)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return MeanCI(mean, float(lo), float(hi), int(v.size), n_clusters)


def cluster_means(values: ArrayLike, clusters: Sequence[str] | None) -> np.ndarray:
    """Mean value per cluster (finite values only): the unit of a cluster-level paired test."""
    v, c = _clean(values, clusters)
    if v.size == 0:
        return v
    sums, counts = _cluster_sums(v, c)
    return sums / counts


EXACT_MAX_N = 50


def signed_rank_p(d: ArrayLike) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zeros dropped, mid-ranks for ties).

    Exact null distribution by dynamic programming over the (doubled, hence integer) ranks for
    up to 50 non-zero differences, ties included; normal approximation with tie correction
    beyond. Our own implementation because scipy falls back to a slow permutation test on ties.
    """
    from scipy import stats

    x = np.asarray(d, dtype=np.float64)
    x = x[np.isfinite(x) & (x != 0)]
    n = x.size
    if n == 0:
        return 1.0
    ranks = stats.rankdata(np.abs(x))  # mid-ranks, multiples of 0.5
    w_plus = float(ranks[x > 0].sum())
    if n <= EXACT_MAX_N:
        r2 = np.rint(2 * ranks).astype(np.int64)
        total = int(r2.sum())
        counts = np.zeros(total + 1, dtype=np.float64)
        counts[0] = 1.0
        for r in r2:
            counts[r:] += counts[:-r].copy()  # add rank r to every subset sum (copy: no overlap)
        probs = counts / counts.sum()
        k = int(round(2 * w_plus))
        lower = probs[: k + 1].sum()
        upper = probs[k:].sum()
        return float(min(1.0, 2.0 * min(lower, upper)))
    mean = n * (n + 1) / 4.0
    _, tie_counts = np.unique(ranks, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(tie_counts ** 3 - tie_counts)) / 48.0
    if var <= 0:
        return 1.0
    z = (w_plus - mean) / math.sqrt(var)
    return float(min(1.0, 2.0 * stats.norm.sf(abs(z))))


def wilcoxon_p(differences: ArrayLike, clusters: Sequence[str] | None = None) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, at the cluster level.

    All-zero differences give p = 1 (no evidence of any difference).
    """
    return signed_rank_p(cluster_means(differences, clusters))


def min_attainable_p(n: int) -> float:
    """Smallest two-sided p-value the exact signed-rank (or sign-flip) test can give with ``n`` non-zero units.

    Only "all differences the same sign" reaches it: 2 / 2**n (ties cannot make it smaller).
    With n = 5 that is 0.0625, so fewer than 6 clusters can never reach p < 0.05.
    """
    return 1.0 if n <= 0 else float(min(1.0, 2.0 ** (1 - n)))


def too_few_text(n: int, alpha: float, unit: str = "clusters") -> str:
    """Plain words for a test whose smallest attainable p-value is not below ``alpha`` (empty when it can)."""
    if min_attainable_p(n) < alpha:
        return ""
    return f"too few {unit} (n={n}) for this test to reach p<{alpha:g}"


def paired_bootstrap_p(differences: ArrayLike, clusters: Sequence[str] | None = None, *,
                       n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> float:
    """Two-sided paired cluster-bootstrap p-value for H0: mean difference = 0.

    Replicates of the mean difference are centred on zero (the null) and compared with the
    observed mean; p is the share at least as extreme (with the +1 correction, never 0).
    """
    v, c = _clean(differences, clusters)
    if v.size == 0 or not np.any(v != 0):
        return 1.0
    observed = float(v.mean())
    reps = bootstrap_means(v, c, n_boot=n_boot, seed=seed) - observed
    extreme = np.sum(np.abs(reps) >= abs(observed))
    return float((extreme + 1) / (n_boot + 1))


def holm(pvalues: ArrayLike) -> list[float]:
    """Holm step-down adjusted p-values (same order as given; NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out.tolist()
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        adj = min(1.0, (m - rank) * p[idx])
        running = max(running, adj)
        out[idx] = running
    return out.tolist()


def one_sided_bound(differences: ArrayLike, clusters: Sequence[str] | None = None, *,
                    confidence: float = 0.95, side: str = "lower", n_boot: int = DEFAULT_N_BOOT,
                    seed: int = 0) -> float:
    """One-sided percentile cluster-bootstrap bound on the mean difference.

    ``side="lower"``: with ``confidence`` the true mean is above the returned value;
    ``side="upper"``: below it. NaN when there are no finite differences; with a single cluster
    the bound is the observed mean (no resampling is possible, and the caller reports that).
    """
    v, c = _clean(differences, clusters)
    if v.size == 0:
        return math.nan
    n_clusters = len(set(c)) if c is not None else v.size
    if n_clusters < 2:
        return float(v.mean())
    reps = bootstrap_means(v, c, n_boot=n_boot, seed=seed)
    q = (1.0 - confidence) * 100.0
    return float(np.percentile(reps, q if side == "lower" else 100.0 - q))
