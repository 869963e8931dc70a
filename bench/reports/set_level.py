"""The report's "Set-level metrics" table: FAD and any other metric with one value per set of items.

Rows come from the run's ``set_results`` table (``bench.store``; an older database has none, and the
section is then left out): one per (metric, codec, operating point, stratum) with the value, its 95 %
bootstrap CI over items, the number of items, the mean measured kbps over the set and the embedding
model (its name and the first 12 hex digits of its weights' SHA-256), so a value is never read without
knowing which model made it. Written into ``report.md``, the HTML page, ``report.json``
(``set_level``) and ``set_level.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from bench.reports.load import RunData

TITLE = "Set-level metrics"
TEXT = ("One value per codec operating point and stratum, over the set of items that coded: FAD is the "
        "Fréchet distance between Gaussians fitted to the embeddings of the references and of the "
        "reconstructions (lower is better; 0 for identical sets). 95% CI: bootstrap over items (paired, "
        "re-centred percentiles). FAD is biased upwards on small sets, so compare rows over the same items "
        "(the items column); a dash is a value that could not be computed, with the reason in the note.")


def set_rows(data: RunData) -> list[dict[str, Any]]:
    """The run's set-level rows as stored (``extra`` parsed), sorted by metric, stratum, codec and rate."""
    from bench.store import Store

    with Store(data.db_path, readonly=True) as store:
        rows = store.set_results(data.run_id)

    def order(r: dict[str, Any]) -> tuple[Any, ...]:
        kbps = (r["extra"] or {}).get("nominal_kbps")
        return (r["metric"], r["stratum"], r["codec"], kbps if isinstance(kbps, (int, float)) else math.inf, r["op"])

    return sorted(rows, key=order)


def model_label(extra: dict[str, Any]) -> str:
    """The embedding model of a row: its name (hub id or folder) and weights hash prefix."""
    name = extra.get("embedding_model") or extra.get("embedder") or "unknown model"
    sha = extra.get("weights_sha256")
    return f"{name} ({str(sha)[:12]})" if sha else f"{name} (no weights)"


def _note(r: dict[str, Any]) -> str:
    """Why a row has no value, else the row's caveats (rank-deficient covariance, items left out)."""
    extra = r["extra"] or {}
    parts = [str(r["error"])] if r["status"] != "ok" and r["error"] else []
    if r["status"] == "ok" and extra.get("note"):
        parts.append(str(extra["note"]))
    if extra.get("excluded") and r["status"] == "ok":
        parts.append(f"{len(extra['excluded'])} item(s) left out (audio unavailable)")
    return "; ".join(parts)


def display_rows(data: RunData) -> list[dict[str, str]]:
    """Display rows of the set-level table (shared by markdown and HTML)."""
    from bench.reports.report import fmt

    rows = []
    for r in set_rows(data):
        extra = r["extra"] or {}
        ok = r["status"] == "ok" and math.isfinite(r["value"])
        ci = f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if ok and math.isfinite(r["ci_low"]) else "n/a"
        rows.append({"metric": str(extra.get("display_name") or r["metric"]), "codec": data.label(r["codec"]),
                     "point": str(r["op"]), "measured kbps": fmt(extra.get("measured_kbps")),
                     "stratum": str(r["stratum"]), "value": fmt(r["value"]), "95% CI": ci,
                     "items": str(r["n_items"]), "embedding model": model_label(extra), "note": _note(r)})
    return rows


def records(data: RunData) -> list[dict[str, Any]]:
    """The set-level rows for ``report.json``: numbers as numbers (NaN as null), the model named."""
    out = []
    for r in set_rows(data):
        extra = r["extra"] or {}
        out.append({"metric": r["metric"], "display_name": extra.get("display_name"), "codec": r["codec"],
                    "label": data.label(r["codec"]), "op": r["op"], "stratum": r["stratum"],
                    "dataset": extra.get("dataset"), "domain": extra.get("domain"),
                    "sample_rate_hz": extra.get("sample_rate_hz"), "nominal_kbps": extra.get("nominal_kbps"),
                    "measured_kbps": extra.get("measured_kbps"), "n_items": r["n_items"],
                    **{k: (r[k] if math.isfinite(r[k]) else None) for k in ("value", "ci_low", "ci_high")},
                    "status": r["status"], "error": r["error"], "embedding_model": extra.get("embedding_model"),
                    "weights_sha256": extra.get("weights_sha256"), "embedder": extra.get("embedder"),
                    "item_set_sha256": extra.get("item_set_sha256"), "note": _note(r)})
    return out


def markdown_section(data: RunData) -> list[str]:
    """The section's lines of ``report.md`` (none when the run has no set-level rows)."""
    from bench.reports.report import _md_table, md_escape

    rows = display_rows(data)
    if not rows:
        return []
    return [f"## {TITLE}", "", md_escape(TEXT), "", _md_table(rows)]


def html_section(data: RunData, table: Callable[[list[dict[str, str]]], str]) -> str:
    """The section's HTML, its table drawn by the page's own ``table`` function ("" without set-level rows)."""
    import html

    rows = display_rows(data)
    if not rows:
        return ""
    return (f'<h2 id="set-level">{html.escape(TITLE)}</h2><p class="note">{html.escape(TEXT)}</p>'
            + table(rows))


def write_csv(report: Any, out_dir: Path) -> list[Path]:
    """Write ``set_level.csv`` (full precision, one row per set value) when the run has set-level rows."""
    import pandas as pd

    from bench.reports.report import _with_banners

    rows = records(report.data)
    if not rows:
        return []
    path = Path(out_dir) / "set_level.csv"
    _with_banners(report, pd.DataFrame(rows)).to_csv(path, index=False)
    return [path]
