"""The gate's decision: non-inferiority of a candidate on paired per-item differences.

Per metric and operating point, the differences candidate - baseline on the items both scored
are oriented so that positive means better, and their mean is bounded by one-sided
cluster-bootstrap percentiles (speakers/tracks resampled as units, ``bench.reports.stats``):

* ``regression`` (gate fails): the upper bound is below ``-margin``: the candidate is worse by
  more than the margin, with confidence;
* ``pass``: the lower bound is above ``-margin``: not worse than the margin, with confidence;
* ``inconclusive``: neither; passes by default (too few items to tell), fails with ``strict``.

Items the baseline scored but the candidate failed on are regressions of their own (a candidate
that fails on every item is a regression, not an error); a candidate that spends more bits than
the baseline (beyond the kbps tolerance) fails too, since a quality comparison at a higher rate
proves nothing. A margin is absolute (metric units) or relative (a fraction of the baseline mean).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from bench.errors import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE
from bench.gate.common import GateError
from bench.gate.options import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_KBPS_TOLERANCE,
    DEFAULT_MARGIN,
    check_options,
)
from bench.gate.set_level import set_checks

EXIT_PASS, EXIT_ERROR = EXIT_OK, EXIT_USAGE
VERDICT_FORMAT = "bench-gate-verdict"
VERDICT_VERSION = 1

Margin = tuple[float, bool]  # (value, is_relative): relative margins are a fraction of the baseline mean


# --- margins ------------------------------------------------------------------------------------

def _margin_value(tok: str) -> Margin:
    """``"0.1"`` (metric units) or ``"1%"`` (of the baseline mean) -> (value, is_relative); ValueError if not."""
    text = tok.strip()
    rel = text.endswith("%")
    number = text[:-1].strip() if rel else text
    try:
        v = float(number)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a number or percentage (e.g. 0.1 or 1%)") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"a margin must be a non-negative number or percentage, got {text!r}")
    return (v / 100.0 if rel else v), rel


def margin_tokens(text: str | None) -> tuple[Margin | None, dict[str, Margin]]:
    """(default margin or None, {metric: margin}) of a ``--margin`` string, before any metric is known.

    ValueError when it is garbage or ambiguous (two defaults, one metric twice, a nameless ``=v``),
    so the command line can refuse it while parsing.
    """
    default: Margin | None = None
    per: dict[str, Margin] = {}
    for tok in [t for t in (text or "").split(",") if t.strip()]:
        if "=" not in tok:
            if default is not None:
                raise ValueError(f"two default margins in {text!r}; give one, and metric=value for the others")
            default = _margin_value(tok)
            continue
        name, val = (s.strip() for s in tok.split("=", 1))
        if not name:
            raise ValueError(f"{tok.strip()!r} names no metric (expected metric=value)")
        if name in per:
            raise ValueError(f"metric {name!r} has two margins in {text!r}")
        per[name] = _margin_value(val)
    return default, per


def parse_margins(text: str | None, metrics: list[str]) -> dict[str, Margin]:
    """``"0.1"``, ``"1%"`` or ``"si_sdr=0.5,mel_distance=2%"`` -> {metric: (value, is_relative)}.

    A bare value sets the default for every metric; ``metric=value`` entries override it.
    Relative margins are a fraction of the baseline mean's magnitude.
    """
    try:
        default, per = margin_tokens(text)
    except ValueError as exc:
        raise GateError(f"--margin: {exc}") from None
    for name in per:
        if name not in metrics:
            raise GateError(f"--margin names metric {name!r}, not gated here ({', '.join(metrics)})")
    default = default or _margin_value(DEFAULT_MARGIN)
    return {m: per.get(m, default) for m in metrics}


def gated_metrics(baseline: dict[str, Any], metrics: list[str] | None) -> list[str]:
    """The metrics to gate on: ``metrics`` (each one of the baseline's) or all of the baseline's."""
    all_metrics = sorted(baseline["metrics"])
    chosen = list(metrics or all_metrics)
    unknown = sorted(set(chosen) - set(all_metrics))
    if unknown:
        raise GateError(f"--metrics {', '.join(unknown)} not in the baseline ({', '.join(all_metrics)})")
    return chosen


# --- one check ----------------------------------------------------------------------------------

_RUNNER_PREFIX = re.compile(r"^.+? failed on .+?: (?=[A-Za-z_][\w.]*: )")


def _reason_key(error: str) -> str:
    """An item's error without the runner's per-item prefix (``CODEC@OP failed on PATH: ``).

    So the same cause on many items is counted as one reason.
    """
    return _RUNNER_PREFIX.sub("", error, count=1)


def _failure_reasons(item_ids: list[str], errors: dict[str, str]) -> list[list[Any]]:
    """[[reason, count], ...] of the candidate's errors on ``item_ids``, commonest first."""
    counts = Counter(_reason_key(str(errors.get(i) or "no value")) for i in item_ids)
    return [[reason, n] for reason, n in counts.most_common()]


def _decide(common: list[str], newly_failed: list[str], not_run: list[str], failure_reasons: list[list[Any]],
            lower: float, upper: float, m_value: float, confidence: float, strict: bool) -> tuple[str, str]:
    """(status, reason) of one check from its item counts and confidence bounds."""
    if newly_failed:
        top = "; ".join(f"{n}x {r}" for r, n in failure_reasons[:3])
        every = "all " if not common else ""
        return "regression", f"candidate failed on {every}{len(newly_failed)} item(s) the baseline scored ({top})"
    if not common:
        return "error", "no item scored by both baseline and candidate"
    if not_run:
        return "error", f"candidate has no result for {len(not_run)} item(s) the baseline scored"
    if upper < -m_value:
        return "regression", (f"worse by more than the margin: upper {confidence:.0%} bound "
                              f"{upper:+.4g} < -{m_value:.4g}")
    if lower >= -m_value:
        return "pass", f"not worse than the margin: lower {confidence:.0%} bound {lower:+.4g} >= -{m_value:.4g}"
    return ("regression" if strict else "inconclusive",
            f"confidence bounds [{lower:+.4g}, {upper:+.4g}] straddle -{m_value:.4g}"
            + ("; --strict counts this as a regression" if strict else "; passes (use --strict to fail)"))


def _bounds(diff: Any, clusters: list[str], confidence: float, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean, cluster count and one-sided lower/upper bootstrap bounds of the oriented differences."""
    from bench.reports import stats

    return {"mean_improvement": float(diff.mean()), "n_clusters": len(set(clusters)),
            "lower_bound": stats.one_sided_bound(diff, clusters, side="lower", confidence=confidence,
                                                 n_boot=n_boot, seed=seed),
            "upper_bound": stats.one_sided_bound(diff, clusters, side="upper", confidence=confidence,
                                                 n_boot=n_boot, seed=seed)}


def _check(base_vals: dict[str, float | None], cand_vals: dict[str, float | None], cand_errors: dict[str, str],
           clusters: dict[str, str], higher_is_better: bool, margin: Margin, confidence: float,
           n_boot: int, seed: int, strict: bool) -> dict[str, Any]:
    """The non-inferiority decision for one metric at one operating point."""
    import numpy as np

    sign = 1.0 if higher_is_better else -1.0
    common = sorted(i for i, v in base_vals.items() if v is not None and cand_vals.get(i) is not None)
    newly_failed = sorted(i for i, v in base_vals.items() if v is not None and i in cand_vals and cand_vals[i] is None)
    not_run = sorted(i for i, v in base_vals.items() if v is not None and i not in cand_vals)
    base_mean = float(np.mean([base_vals[i] for i in common])) if common else math.nan
    cand_mean = float(np.mean([cand_vals[i] for i in common])) if common else math.nan
    m_value = margin[0] * abs(base_mean) if margin[1] else margin[0]
    out: dict[str, Any] = {
        "n_items": len(common), "baseline_mean": base_mean, "candidate_mean": cand_mean,
        "margin": m_value, "margin_spec": f"{margin[0] * 100:g}%" if margin[1] else f"{margin[0]:g}",
        "newly_failed_items": newly_failed, "items_not_run": not_run,
        "failure_reasons": _failure_reasons(newly_failed, cand_errors),
        "mean_improvement": math.nan, "lower_bound": math.nan, "upper_bound": math.nan, "n_clusters": 0,
    }
    if common:
        diff = sign * (np.array([cand_vals[i] for i in common]) - np.array([base_vals[i] for i in common]))
        out.update(_bounds(diff, [clusters.get(i, i) for i in common], confidence, n_boot, seed))
    out["status"], out["reason"] = _decide(common, newly_failed, not_run, out["failure_reasons"], out["lower_bound"],
                                           out["upper_bound"], m_value, confidence, strict)
    if common and out["n_clusters"] < 2 and out["status"] != "regression":
        out["reason"] += f" (only {out['n_clusters']} cluster: no resampling possible)"
    return out


def _kbps_check(e: dict[str, Any], cand: dict[str, Any], kbps_tolerance: float) -> dict[str, Any] | None:
    """The bitrate check of one entry (None when no item has a measured rate in both)."""
    import numpy as np

    both = [i for i, v in e["measured_kbps"].items() if v is not None and cand["measured_kbps"].get(i) is not None]
    if not both:
        return None
    bm = float(np.mean([e["measured_kbps"][i] for i in both]))
    cm = float(np.mean([cand["measured_kbps"][i] for i in both]))
    ok = cm <= bm * (1 + kbps_tolerance)
    return {"codec": e["codec"], "op": e["op"], "metric": "measured_kbps", "status": "pass" if ok else "regression",
            "baseline_mean": bm, "candidate_mean": cm, "n_items": len(both),
            "reason": f"candidate {cm:.3f} kbps vs baseline {bm:.3f} kbps (tolerance +{kbps_tolerance:.0%})"}


# --- the verdict --------------------------------------------------------------------------------

def _verdict_reason(verdict: str, checks: list[dict[str, Any]]) -> str:
    """One sentence on why the verdict is what it is; names every-pair failure and its counted reasons."""
    scored = [c for c in checks if "newly_failed_items" in c]
    failed = sum(len(c["newly_failed_items"]) for c in scored)
    if failed and not any(c["n_items"] for c in scored):
        reasons: Counter[str] = Counter()
        for c in scored:
            reasons.update({r: n for r, n in c["failure_reasons"]})
        top = "; ".join(f"{n}x {r}" for r, n in reasons.most_common(3))
        more = f"; {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else ""
        return (f"every pair failed: the candidate failed on all {failed} value(s) the baseline scored "
                f"({top}{more})")
    bad = [c for c in checks if c["status"] == verdict] if verdict != "pass" else []
    if not bad:
        n_inc = sum(c["status"] == "inconclusive" for c in checks)
        return f"no regression in {len(checks)} check(s)" + (f" ({n_inc} inconclusive)" if n_inc else "")
    names = ", ".join(f"{c['codec']}@{c['op']} {c['metric']}" for c in bad[:3]) + (", ..." if len(bad) > 3 else "")
    what = "regressed" if verdict == "regression" else "could not be decided"
    return f"{len(bad)} of {len(checks)} check(s) {what}: {names} (first: {bad[0]['reason']})"


def _entry_checks(baseline: dict[str, Any], e: dict[str, Any], cand: dict[str, Any], metrics: list[str],
                  margins: dict[str, Margin], clusters: dict[str, str], confidence: float, kbps_tolerance: float,
                  n_boot: int, seed: int, strict: bool) -> list[dict[str, Any]]:
    """The checks of one compared entry: its bitrate (when measured), then each gated metric it has values of."""
    kbps = _kbps_check(e, cand, kbps_tolerance)
    checks = [kbps] if kbps else []
    for m in metrics:
        bv = e["values"].get(m)
        if bv is None:
            continue
        hib = bool(baseline["metrics"][m]["higher_is_better"])
        res = _check(bv, cand["values"].get(m, {}), cand["errors"].get(m, {}), clusters, hib, margins[m],
                     confidence, n_boot, seed, strict)
        checks.append({"codec": e["codec"], "op": e["op"], "metric": m, "higher_is_better": hib, **res})
    return checks


def _compared_entry(e: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """Which baseline entry was compared with which candidate codec key, and their checkpoint hashes."""
    return {"baseline_codec": e["codec"], "candidate_codec": cand["codec"], "op": e["op"],
            "baseline_checkpoint_hash": e.get("checkpoint_hash"),
            "candidate_checkpoint_hash": cand.get("checkpoint_hash")}


def _overall(statuses: list[str]) -> str:
    """The verdict of a set of check statuses: any error, else any regression, else pass."""
    if "error" in statuses:
        return "error"
    return "regression" if "regression" in statuses else "pass"


def evaluate(baseline: dict[str, Any], candidate: dict[tuple[str, str], dict[str, Any]], *,
             metrics: list[str] | None = None, margin: str | None = None, confidence: float = DEFAULT_CONFIDENCE,
             kbps_tolerance: float = DEFAULT_KBPS_TOLERANCE, strict: bool = False,
             n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """The verdict: one check per (entry, metric) plus a bitrate check per entry."""
    confidence, kbps_tolerance, n_boot, seed = check_options(confidence, kbps_tolerance, n_boot, seed)
    metrics = gated_metrics(baseline, metrics)
    margins = parse_margins(margin, metrics)
    clusters = {it["id"]: str(it.get("cluster") or it["id"]) for it in baseline["items"]}
    checks: list[dict[str, Any]] = []
    compared_entries = []
    for e in baseline["entries"]:
        key = (e["codec"], e["op"])
        if key not in candidate:
            continue
        cand = candidate[key]
        compared_entries.append(_compared_entry(e, cand))
        checks += _entry_checks(baseline, e, cand, metrics, margins, clusters, confidence, kbps_tolerance,
                                n_boot, seed, strict)
        checks += set_checks(baseline, e, cand, metrics, margins, strict)  # FAD: value and CI per set
    if not compared_entries:
        raise GateError("the candidate has none of the baseline's codec operating points "
                        f"({', '.join(sorted({x['codec'] for x in baseline['entries']}))})")
    if not any(c["metric"] in metrics for c in checks):
        raise GateError(f"the compared operating points have no baseline values for --metrics {', '.join(metrics)}")
    not_compared = [f"{e['codec']}@{e['op']}" for e in baseline["entries"] if (e["codec"], e["op"]) not in candidate]
    statuses = [c["status"] for c in checks]
    verdict = _overall(statuses)
    return {
        "format": VERDICT_FORMAT, "version": VERDICT_VERSION, "verdict": verdict,
        "reason": _verdict_reason(verdict, checks),
        "exit_code": {"pass": EXIT_PASS, "regression": EXIT_REGRESSION}.get(verdict, EXIT_ERROR),
        "confidence": confidence, "strict": strict, "kbps_tolerance": kbps_tolerance,
        "metrics": metrics, "entries": compared_entries, "not_compared": not_compared,
        "counts": {s: statuses.count(s) for s in ("pass", "inconclusive", "regression", "error")},
        "checks": checks,
    }


def error_verdict(message: str) -> dict[str, Any]:
    """The verdict of a gate that could not decide (a user's mistake, a failed run): exit code 2, no checks.

    Written like any verdict, so that CI can still post why the gate did not run.
    """
    return {"format": VERDICT_FORMAT, "version": VERDICT_VERSION, "verdict": "error", "exit_code": EXIT_ERROR,
            "error": message, "checks": [], "counts": {}}
