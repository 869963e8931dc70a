"""Set-level metrics (FAD) in the gate: their baseline entries, their candidate values, their decision.

A set-level value has no per-item differences to bound, only the value and the 95 % bootstrap CI over
items that the run stored (``bench.pipeline.set_level``). The baseline keeps, beside its per-item
entries, one ``set_entries`` row per (codec, operating point, metric, stratum): value, CI, item count,
the item set's hash and the embedding model (name and weights hash). A candidate is decided per row,
oriented by the metric's direction, in the spirit of the per-item non-inferiority rule:

* ``regression``: worse than the baseline by more than the margin AND the two CIs do not overlap
  (the candidate's interval lies entirely on the worse side): worse, with confidence;
* ``pass``: not worse than the baseline by more than the margin;
* ``inconclusive``: worse by more than the margin but the CIs overlap; passes unless ``strict``.

A candidate without a value where the baseline had one is a regression (its reason says why); one
without the row is an error, as is a value from another embedding model (other weights: the numbers
are not comparable). A comparison over item sets that differ says so in its reason.
"""

from __future__ import annotations

import math
from typing import Any

from bench.gate.common import GateError, finite_or_none, str_or_none

Margin = tuple[float, bool]  # as bench.gate.decision: (value, is_relative)


def run_set_rows(data: Any) -> list[dict[str, Any]]:
    """A run's set-level rows (none for a database made before they existed)."""
    from bench.reports.set_level import set_rows

    return set_rows(data)


def set_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A baseline (or candidate) set entry from a stored row: value, CI, counts, item set and model."""
    extra = row.get("extra") or {}
    value = finite_or_none(row["value"]) if row["status"] == "ok" else None
    return {"codec": row["codec"], "op": row["op"], "metric": row["metric"], "stratum": row["stratum"],
            "value": value, "ci_low": finite_or_none(row["ci_low"]), "ci_high": finite_or_none(row["ci_high"]),
            "n_items": int(row["n_items"] or 0), "error": None if value is not None else str(row["error"] or "no value"),
            "item_set_sha256": str_or_none(extra.get("item_set_sha256")),
            "embedding_model": str_or_none(extra.get("embedding_model")),
            "weights_sha256": str_or_none(extra.get("weights_sha256"))}


def baseline_set_entries(data: Any, entries: list[dict[str, Any]], metrics: list[str] | None) -> list[dict[str, Any]]:
    """Set entries of the baseline's (codec, op) entries, for ``metrics`` (all the run's set-level ones if None)."""
    keys = {(e["codec"], e["op"]) for e in entries}
    return [set_entry(r) for r in run_set_rows(data)
            if (r["codec"], r["op"]) in keys and (metrics is None or r["metric"] in metrics)]


def candidate_set_values(data: Any, codec: str, op: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{metric: {stratum: set entry}} of one candidate codec point."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in run_set_rows(data):
        if r["codec"] == codec and r["op"] == op:
            out.setdefault(r["metric"], {})[r["stratum"]] = set_entry(r)
    return out


def _require(ok: bool, where: str, field: str, what: str) -> None:
    """GateError naming the field unless ``ok``."""
    if not ok:
        raise GateError(f"baseline {where}: field '{field}' must be {what}")


def _number_or_null(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def validate_set_entries(doc: dict[str, Any], where: str, metrics: set[str]) -> None:
    """``set_entries`` (optional): distinct (codec, op, metric, stratum) rows of numbers, names and hashes."""
    entries = doc.get("set_entries", [])
    _require(isinstance(entries, list), where, "set_entries", "a list")
    seen: set[tuple[str, str, str, str]] = set()
    for k, e in enumerate(entries):
        field = f"set_entries[{k}]"
        _require(isinstance(e, dict), where, field, "an object")
        for key in ("codec", "op", "metric", "stratum"):
            _require(isinstance(e.get(key), str) and bool(e[key].strip()), where, f"{field}.{key}", "a non-empty string")
        if e["metric"] not in metrics:
            raise GateError(f"baseline {where}: field '{field}.metric' is {e['metric']!r}, which 'metrics' does not list")
        for key in ("value", "ci_low", "ci_high"):
            _require(_number_or_null(e.get(key)), where, f"{field}.{key}", "a number or null")
        n = e.get("n_items")
        _require(isinstance(n, int) and not isinstance(n, bool) and n >= 0, where, f"{field}.n_items",
                 "a non-negative integer")
        for key in ("error", "item_set_sha256", "embedding_model", "weights_sha256"):
            _require(e.get(key) is None or isinstance(e.get(key), str), where, f"{field}.{key}", "a string or null")
        key4 = (e["codec"], e["op"], e["metric"], e["stratum"])
        if key4 in seen:
            raise GateError(f"baseline {where}: field '{field}' repeats {e['codec']}@{e['op']} {e['metric']} {e['stratum']}")
        seen.add(key4)


def _worse_by(base: float, cand: float, higher_is_better: bool) -> float:
    """How much worse the candidate is (positive = worse), in the metric's units."""
    return base - cand if higher_is_better else cand - base


def _cis_apart(b: dict[str, Any], c: dict[str, Any], higher_is_better: bool) -> bool:
    """Whether the candidate's CI lies entirely on the worse side of the baseline's (None bounds: unknown, False)."""
    if None in (b["ci_low"], b["ci_high"], c["ci_low"], c["ci_high"]):
        return False
    return c["ci_high"] < b["ci_low"] if higher_is_better else c["ci_low"] > b["ci_high"]


def _decide(b: dict[str, Any], c: dict[str, Any] | None, hib: bool, m_value: float, strict: bool) -> tuple[str, str]:
    """(status, reason) of one set-level check."""
    if c is None:
        return "error", "candidate has no value for this set (the run did not compute it)"
    if c["value"] is None:
        return "regression", f"candidate has no value where the baseline had one: {c['error']}"
    if b.get("weights_sha256") and c.get("weights_sha256") and b["weights_sha256"] != c["weights_sha256"]:
        return "error", (f"embedding models differ (baseline {b.get('embedding_model')} {b['weights_sha256'][:12]}, "
                         f"candidate {c.get('embedding_model')} {c['weights_sha256'][:12]}): values not comparable")
    worse = _worse_by(b["value"], c["value"], hib)
    cis = (f"95% CIs [{b['ci_low']:.4g}, {b['ci_high']:.4g}] and [{c['ci_low']:.4g}, {c['ci_high']:.4g}]"
           if None not in (b["ci_low"], b["ci_high"], c["ci_low"], c["ci_high"]) else "no CI")
    if worse <= m_value:
        return "pass", f"not worse than the margin: {c['value']:.4g} vs {b['value']:.4g} (margin {m_value:.4g})"
    if _cis_apart(b, c, hib):
        return "regression", f"worse by {worse:.4g} (> margin {m_value:.4g}) and the {cis} do not overlap"
    return ("regression" if strict else "inconclusive",
            f"worse by {worse:.4g} (> margin {m_value:.4g}) but the {cis} overlap"
            + ("; --strict counts this as a regression" if strict else "; passes (use --strict to fail)"))


def _model(b: dict[str, Any]) -> str:
    """The embedding model of a set entry, as the report names it: name and weights hash prefix."""
    sha = b.get("weights_sha256")
    return f"{b.get('embedding_model') or 'unknown model'} {sha[:12]}" if sha else str(b.get("embedding_model"))


def set_check(b: dict[str, Any], c: dict[str, Any] | None, higher_is_better: bool, margin: Margin,
              strict: bool) -> dict[str, Any]:
    """The decision for one baseline set entry against the candidate's value of the same set."""
    m_value = margin[0] * abs(b["value"]) if margin[1] else margin[0]
    status, reason = _decide(b, c, higher_is_better, m_value, strict)
    if c is not None and c.get("item_set_sha256") != b.get("item_set_sha256"):
        reason += f"; over other items ({b['n_items']} in the baseline's set, {c['n_items']} in the candidate's)"
    cand_value = c["value"] if c is not None else None
    improvement = ((cand_value - b["value"] if higher_is_better else b["value"] - cand_value)
                   if cand_value is not None else math.nan)
    return {"codec": b["codec"], "op": b["op"], "metric": b["metric"], "stratum": b["stratum"], "set_level": True,
            "higher_is_better": higher_is_better, "baseline_mean": b["value"],
            "candidate_mean": cand_value if cand_value is not None else math.nan, "mean_improvement": improvement,
            "baseline_ci": [b["ci_low"], b["ci_high"]], "candidate_ci": [c["ci_low"], c["ci_high"]] if c else None,
            "n_items": b["n_items"], "candidate_n_items": c["n_items"] if c else 0,
            "embedding_model": b.get("embedding_model"), "weights_sha256": b.get("weights_sha256"),
            "margin": m_value, "margin_spec": f"{margin[0] * 100:g}%" if margin[1] else f"{margin[0]:g}",
            "status": status, "reason": f"{b['stratum']} ({_model(b)}): {reason}"}


def set_checks(baseline: dict[str, Any], e: dict[str, Any], cand: dict[str, Any], metrics: list[str],
               margins: dict[str, Margin], strict: bool) -> list[dict[str, Any]]:
    """The set-level checks of one compared entry: each baseline set value of its codec point, gated metrics only."""
    checks = []
    for b in baseline.get("set_entries", []):
        if (b["codec"], b["op"]) != (e["codec"], e["op"]) or b["metric"] not in metrics or b["value"] is None:
            continue
        hib = bool(baseline["metrics"][b["metric"]]["higher_is_better"])
        c = cand.get("set_values", {}).get(b["metric"], {}).get(b["stratum"])
        checks.append(set_check(b, c, hib, margins[b["metric"]], strict))
    return checks
