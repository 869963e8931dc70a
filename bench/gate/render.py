"""The verdict as strict JSON and as a short markdown summary a CI system can post as a comment.

The summary lists the checks that did not pass first (regressions, errors, inconclusive), each
with its reason, and folds the passing ones into a ``<details>`` block.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.gate.common import finite_or_none

_ICON = {"pass": "✅", "regression": "❌", "error": "⚠️", "inconclusive": "➖"}
_STATUS_ORDER = {"regression": 0, "error": 1, "inconclusive": 2, "pass": 3}


def json_safe(obj: Any) -> Any:
    """NaN/Inf to None and numpy scalars to Python, so the verdict is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _f(x: Any) -> str:
    """A table cell for a number: four significant digits, a dash when there is none."""
    v = finite_or_none(x)
    return "–" if v is None else f"{v:.4g}"


def _check_table(checks: list[dict[str, Any]], icon: dict[str, str]) -> list[str]:
    """Markdown table rows of ``checks``: means, mean improvement, bounds, margin and status."""
    from bench.reports.load import display_codec

    lines = ["| codec@op | metric | baseline | candidate | Δ (better +) | one-sided bounds | margin | status |",
             "|---|---|---|---|---|---|---|---|"]
    for ch in checks:
        bound = f"[{_f(ch.get('lower_bound'))}, {_f(ch.get('upper_bound'))}]" if "lower_bound" in ch else ""
        metric = f"{ch['metric']} [{ch['stratum']}]" if ch.get("stratum") else ch["metric"]
        if "baseline_ci" in ch:  # a set-level check: the two CIs stand where per-item checks show bounds
            bound = "base [" + ", ".join(_f(x) for x in ch["baseline_ci"]) + "] cand [" + ", ".join(
                _f(x) for x in (ch.get("candidate_ci") or [None, None])) + "]"
        lines.append(f"| {display_codec(ch['codec'])}@{ch['op']} | {metric} | {_f(ch.get('baseline_mean'))} | "
                     f"{_f(ch.get('candidate_mean'))} | {_f(ch.get('mean_improvement'))} | {bound} | "
                     f"{ch.get('margin_spec', '')} | {icon.get(ch['status'], '')} {ch['status']} |")
    return lines


def markdown_summary(verdict: dict[str, Any]) -> str:
    """A short summary a CI system can post as a comment."""
    icon = _ICON
    c = verdict.get("counts", {})
    head = f"### Checkpoint gate: {icon.get(verdict['verdict'], '')} {verdict['verdict'].upper()}"
    if verdict.get("error") and not verdict.get("checks"):
        return f"{head}\n\nError: {verdict['error']}\n"
    counts = (f"{c.get('pass', 0)} pass, {c.get('inconclusive', 0)} inconclusive, {c.get('regression', 0)} "
              f"regression, {c.get('error', 0)} error; one-sided {verdict.get('confidence', 0.95):.0%} "
              "cluster-bootstrap bounds on per-item differences (positive = better).")
    lines = [head, ""] + ([verdict["reason"], ""] if verdict.get("reason") else []) + [counts, ""]
    checks = verdict.get("checks", [])
    checks = sorted(checks, key=lambda x: (_STATUS_ORDER.get(x["status"], 9), x["codec"], x["op"], x["metric"]))
    notable = [ch for ch in checks if ch["status"] != "pass"]
    passed = [ch for ch in checks if ch["status"] == "pass"]
    if notable:
        lines += _check_table(notable, icon) + [""]
        lines += [f"- {ch['codec']}@{ch['op']} {ch['metric']}: {ch['reason']}" for ch in notable[:20]] + [""]
    if verdict.get("not_compared"):
        lines += [f"Not in the candidate (not gated): {', '.join(verdict['not_compared'])}", ""]
    if passed:
        lines += [f"<details><summary>{len(passed)} passing check(s)</summary>", ""] + _check_table(passed, icon) + [
            "", "</details>"]
    if verdict.get("error"):
        lines += ["", f"Error: {verdict['error']}"]
    return "\n".join(lines) + "\n"


def write_outputs(verdict: dict[str, Any], json_path: str | Path | None, markdown_path: str | Path | None) -> str:
    """Write the JSON verdict and the markdown summary where asked (folders made as needed); returns the summary."""
    text = markdown_summary(verdict)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(json_safe(verdict), indent=1, default=str, allow_nan=False))
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(text)
    return text
