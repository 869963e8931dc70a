"""The baseline document: made from a run (``bench baseline save``), validated, loaded.

For every (codec, operating point) of a run it stores the per-item metric values, errors and
measured kbps, with the item list (ids, clusters), the metric directions and the run's settings,
so that a candidate can be evaluated on exactly the same items later; and, in ``set_entries``, the
values of set-level metrics (FAD: one per codec point and stratum, with CI and embedding model;
:mod:`bench.gate.set_level`), which older baselines lack. A document is validated as
a whole, when it is made and when it is loaded, so the rest of the gate can index it freely.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from bench.errors import one_line
from bench.gate.common import GateError, finite_or_none, str_or_none
from bench.gate.runs import checkpoint_hash, entry_scores, load_gate_run
from bench.gate.set_level import baseline_set_entries, run_set_rows, validate_set_entries

BASELINE_FORMAT = "bench-baseline"
BASELINE_VERSION = 1


# --- making one ---------------------------------------------------------------------------------

def _restrict(res: Any, column: str, wanted: list[str] | None, available: list[str], option: str) -> Any:
    """Results rows whose ``column`` is one of ``wanted`` (all rows when None); GateError for unknown names."""
    if not wanted:
        return res
    unknown = sorted(set(wanted) - set(res[column]))
    if unknown:
        raise GateError(f"{option}: {', '.join(unknown)} not in the run; the run has {', '.join(available)}")
    return res[res[column].isin(wanted)]


def _entries(data: Any, res: Any) -> list[dict[str, Any]]:
    """One baseline entry per (codec, op) of the results rows ``res``, in sorted order."""
    entries = []
    coded = data.coded
    for (codec, op), g in res.groupby(["codec", "op"], sort=True):
        scores = entry_scores(g, coded[(coded["codec"] == codec) & (coded["op"] == op)])
        nominal = finite_or_none(g["nominal_kbps"].dropna().iloc[0]) if g["nominal_kbps"].notna().any() else None
        entries.append({"codec": codec, "op": op, "nominal_kbps": nominal, **scores,
                        "checkpoint_hash": checkpoint_hash(data, codec)})
    return entries


def _items(data: Any) -> list[dict[str, Any]]:
    """The run's item list: id, cluster (the bootstrap's resampling unit), domain, dataset, split."""
    return [{"id": r.item_id, "cluster": str_or_none(r.cluster), "domain": str_or_none(r.domain),
             "dataset": str_or_none(r.dataset), "split": str_or_none(getattr(r, "split", None))}
            for r in data.items.itertuples()]


def make_baseline(run_dir: str | Path, *, run_id: str | None = None, metrics: list[str] | None = None,
                  codecs: list[str] | None = None) -> dict[str, Any]:
    """The baseline document of a run (optionally restricted to some metrics and codec keys)."""
    data = load_gate_run(run_dir, run_id)
    set_names = sorted({r["metric"] for r in run_set_rows(data)})
    per_item = [m for m in metrics if m not in set_names] if metrics else None
    if metrics and not per_item:
        raise GateError(f"--metrics: {', '.join(metrics)} are set-level only; a baseline needs a per-item metric too")
    res = _restrict(data.results, "metric", per_item, data.metrics + set_names, "--metrics")
    res = _restrict(res, "codec", codecs, data.codecs, "--codecs")
    if res.empty:
        raise GateError(f"{data.db_path}: no results to save as a baseline")
    entries = _entries(data, res)
    set_entries = baseline_set_entries(data, entries, [m for m in metrics if m in set_names] if metrics else None)
    used_metrics = sorted(set(res["metric"]) | {s["metric"] for s in set_entries})
    settings = data.manifest.get("settings") if isinstance(data.manifest.get("settings"), dict) else {}
    doc = {
        "format": BASELINE_FORMAT, "version": BASELINE_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": str(Path(run_dir).resolve()), "run_id": data.run_id,
        "settings": settings,
        "dataset": next(iter(sorted(set(data.items["dataset"]))), None),
        "split": next(iter(sorted(set(data.items["split"].dropna()))), None),
        "item_list_sha256": str_or_none(data.manifest.get("item_list_sha256")),
        "metrics": {m: {"higher_is_better": data.info(m).higher_is_better, "unit": data.info(m).unit}
                    for m in used_metrics},
        "items": _items(data),
        "entries": entries,
        "set_entries": set_entries,
    }
    validate_baseline(doc, f"made from {data.db_path}")  # never write a baseline the gate would refuse
    return doc


# --- validating one -----------------------------------------------------------------------------

_CONTAINER_KIND: dict[type, str] = {list: "a list", dict: "an object"}


def _kind(v: Any) -> str:
    """How a JSON value reads in an error message: its type, or the value itself for short scalars."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"{v}" if not math.isfinite(v) else "a number"
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    return _CONTAINER_KIND.get(type(v), type(v).__name__)


def _require(ok: bool, where: str, field: str, what: str, value: Any) -> None:
    """Raise ``baseline WHERE: field 'FIELD' must be WHAT, got ...`` unless ``ok``."""
    if not ok:
        raise GateError(f"baseline {where}: field '{field}' must be {what}, got {_kind(value)}")


def _is_number(v: Any) -> bool:
    """A finite JSON number (a boolean is not one, though Python counts it as an int)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_opt_number(v: Any) -> bool:
    """A finite number or null (a value that was not scored)."""
    return v is None or _is_number(v)


def _is_opt_str(v: Any) -> bool:
    """A string or null."""
    return v is None or isinstance(v, str)


def _is_name(v: Any) -> bool:
    """A string with something other than blanks in it (ids, codec keys, operating points)."""
    return isinstance(v, str) and bool(v.strip())


def _check_header(doc: Any, where: str) -> None:
    """Format, version and the descriptive top-level fields."""
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise GateError(f"{where}: not a bench baseline (format field is {found!r})")
    if doc.get("version") != BASELINE_VERSION:
        raise GateError(f"{where}: baseline version {doc.get('version')!r}, this build reads {BASELINE_VERSION}")
    for key in ("created_utc", "source_run", "run_id", "dataset", "split", "item_list_sha256"):
        _require(_is_opt_str(doc.get(key)), where, key, "a string or null", doc.get(key))
    settings = doc.get("settings")
    _require(settings is None or isinstance(settings, dict), where, "settings", "an object", settings)


def _check_metrics(doc: dict[str, Any], where: str) -> set[str]:
    """``metrics``: {name: {higher_is_better: bool, unit: str}}, not empty; returns the names."""
    metrics: Any = doc.get("metrics")  # a JSON value: its shape is what is checked here
    _require(isinstance(metrics, dict) and bool(metrics), where, "metrics", "a non-empty object", metrics)
    for name, info in metrics.items():
        _require(isinstance(info, dict), where, f"metrics.{name}", "an object", info)
        hib = info.get("higher_is_better")
        _require(isinstance(hib, bool), where, f"metrics.{name}.higher_is_better", "true or false", hib)
        _require(_is_opt_str(info.get("unit")), where, f"metrics.{name}.unit", "a string", info.get("unit"))
    return set(metrics)


def _check_items(doc: dict[str, Any], where: str) -> set[str]:
    """``items``: a non-empty list of {id, cluster, domain, dataset, split} with unique ids; returns the ids."""
    items: Any = doc.get("items")  # a JSON value: its shape is what is checked here
    _require(isinstance(items, list) and bool(items), where, "items", "a non-empty list", items)
    ids: set[str] = set()
    for k, it in enumerate(items):
        _require(isinstance(it, dict), where, f"items[{k}]", "an object", it)
        _require(_is_name(it.get("id")), where, f"items[{k}].id", "a non-empty string", it.get("id"))
        for key in ("cluster", "domain", "dataset", "split"):
            _require(_is_opt_str(it.get(key)), where, f"items[{k}].{key}", "a string or null", it.get(key))
        if it["id"] in ids:
            raise GateError(f"baseline {where}: field 'items[{k}].id' repeats item {it['id']!r}")
        ids.add(it["id"])
    return ids


def _check_item_map(value: Any, field: str, where: str, ids: set[str], ok: Callable[[Any], bool], what: str) -> None:
    """An object {item id: value} whose ids are baseline items and whose values are ``ok``."""
    _require(isinstance(value, dict), where, field, f"an object {{item id: {what}}}", value)
    for item_id, v in value.items():
        if item_id not in ids:
            raise GateError(f"baseline {where}: field '{field}' has item {item_id!r}, which 'items' does not list")
        _require(ok(v), where, f"{field}.{item_id}", what, v)


def _check_per_metric(value: Any, field: str, where: str, metrics: set[str], ids: set[str],
                      ok: Callable[[Any], bool], what: str) -> None:
    """An object {metric: {item id: value}} over the baseline's metrics and items."""
    _require(isinstance(value, dict), where, field, "an object {metric: {item id: value}}", value)
    for metric, per_item in value.items():
        if metric not in metrics:
            raise GateError(f"baseline {where}: field '{field}' has metric {metric!r}, which 'metrics' does not list")
        _check_item_map(per_item, f"{field}.{metric}", where, ids, ok, what)


def _check_entry(e: Any, field: str, where: str, metrics: set[str], ids: set[str]) -> None:
    """One entry: codec, op, nominal_kbps, measured_kbps, values, errors, checkpoint_hash."""
    _require(isinstance(e, dict), where, field, "an object", e)
    _require(_is_name(e.get("codec")), where, f"{field}.codec", "a non-empty string", e.get("codec"))
    _require(_is_name(e.get("op")), where, f"{field}.op", "a non-empty string", e.get("op"))
    _require(_is_opt_number(e.get("nominal_kbps")), where, f"{field}.nominal_kbps", "a number or null",
             e.get("nominal_kbps"))
    _require(_is_opt_str(e.get("checkpoint_hash")), where, f"{field}.checkpoint_hash", "a string or null",
             e.get("checkpoint_hash"))
    _check_item_map(e.get("measured_kbps"), f"{field}.measured_kbps", where, ids, _is_opt_number, "a number or null")
    _check_per_metric(e.get("values"), f"{field}.values", where, metrics, ids, _is_opt_number, "a number or null")
    _check_per_metric(e.get("errors", {}), f"{field}.errors", where, metrics, ids,
                      lambda v: isinstance(v, str), "a string")


def _check_entries(doc: dict[str, Any], where: str, metrics: set[str], ids: set[str]) -> None:
    """``entries``: a non-empty list of distinct (codec, op) entries with at least one scored value."""
    entries: Any = doc.get("entries")  # a JSON value: its shape is what is checked here
    _require(isinstance(entries, list) and bool(entries), where, "entries", "a non-empty list", entries)
    seen: dict[tuple[str, str], int] = {}
    for k, e in enumerate(entries):
        _check_entry(e, f"entries[{k}]", where, metrics, ids)
        key = (e["codec"], e["op"])
        if key in seen:
            raise GateError(f"baseline {where}: field 'entries[{k}]' repeats {key[0]}@{key[1]} of entries[{seen[key]}]")
        seen[key] = k
    if not any(v is not None for e in entries for per_item in e["values"].values() for v in per_item.values()):
        raise GateError(f"baseline {where}: no entry has a scored value, so there is nothing to gate on")


def validate_baseline(doc: Any, where: str) -> None:
    """Check a baseline document's whole structure, as ``bench baseline save`` writes it.

    Raises :class:`GateError` naming the first bad field (``entries[3].values.si_sdr``), so the
    rest of the gate can index the document without further checks.
    """
    _check_header(doc, where)
    metrics = _check_metrics(doc, where)
    ids = _check_items(doc, where)
    _check_entries(doc, where, metrics, ids)
    validate_set_entries(doc, where, metrics)


# --- loading one --------------------------------------------------------------------------------

def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate a baseline file; every problem is a one-line :class:`GateError`."""
    p = Path(path)
    if not p.exists():
        raise GateError(f"{p}: baseline not found (make one with 'bench baseline save RUN_DIR --out {p}')")
    if not p.is_file():
        raise GateError(f"{p}: baseline is not a file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GateError(f"{p}: cannot read the baseline ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise GateError(f"{p}: not valid JSON ({one_line(exc)})") from None
    validate_baseline(doc, str(p))
    return doc
