"""The checkpoint gate: ``bench baseline save`` and ``bench gate``.

``bench baseline save RUN_DIR --out baseline.json`` stores, for every (codec, operating point)
of a run, the per-item metric values and measured kbps, with the item list (ids, clusters), the
metric directions and the run's settings, so a candidate can be evaluated on exactly the same
items later.

``bench gate --baseline baseline.json --candidate CHECKPOINT_OR_RUN`` gets the candidate's
per-item values (from a run directory, or by running the benchmark on the baseline's items with
the checkpoint in place of the baseline's: ``NAME:CHECKPOINT@OP`` for each of its operating points;
the reconstruction cache makes reruns cheap) and decides per metric and operating point by
non-inferiority on the paired per-item differences, oriented so that positive means better:

* ``regression`` (gate fails): the one-sided upper confidence bound of the mean difference is
  below ``-margin``: the candidate is worse by more than the margin, with confidence;
* ``pass``: the one-sided lower bound is above ``-margin``: not worse than the margin, with confidence;
* ``inconclusive``: neither; passes by default (too few items to tell), fails with ``--strict``.

Bounds are cluster-bootstrap percentiles (speakers/tracks resampled as units). Items the
baseline scored but the candidate failed on count as regressions of their own (a candidate that
fails on every item is a regression, not an error); a candidate that spends more bits than the
baseline (beyond ``--kbps-tolerance``) fails too, since a quality comparison at a higher rate
proves nothing.

Both commands only read results databases (``bench.reports.load.load_run`` opens them with
``Store(readonly=True)``), so they work on a read-only filesystem. A baseline is validated as a
whole when it is loaded.

Exit codes: 0 pass, 1 regression, 2 error (a user's mistake or an undecidable comparison: one
line on stderr). Writes a JSON verdict and a short markdown summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from bench.cli import args as argtypes
from bench.errors import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, UserError, one_line

BASELINE_FORMAT = "bench-baseline"
BASELINE_VERSION = 1
DEFAULT_MARGIN = "1%"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_KBPS_TOLERANCE = 0.05
MAX_BOOTSTRAP = 1_000_000  # the resampling index matrix is n_boot x n_clusters integers

EXIT_PASS, EXIT_ERROR = EXIT_OK, EXIT_USAGE

# checked option types, shared by the command line and the programmatic entry points
BOOTSTRAP = argtypes.int_range(1, MAX_BOOTSTRAP)
CONFIDENCE = argtypes.float_range(0.5, 1.0, lo_open=True, hi_open=True)
KBPS_TOLERANCE = argtypes.float_range(0.0)


class GateError(UserError, RuntimeError):
    """A problem that prevents a verdict (bad baseline, missing items, failed run): exit code 2."""


def _num(x: Any) -> float | None:
    """``x`` as a finite float, else None."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _opt_str(x: Any) -> str | None:
    """``x`` as a string; None for None and NaN (pandas' missing value)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


# --- reading a run (read-only) ----------------------------------------------------------------

def _load_run(run_dir: str | Path, run_id: str | None = None) -> Any:
    """One run, read by ``bench.reports.load.load_run`` (a read-only Store: it changes nothing on disk).

    A missing run, a file that is not a results database (or lacks one of its tables) and an
    unknown run id are UserErrors there already; a database damaged in another way (a table with
    other columns) fails inside SQLite or pandas, and is one here too.
    """
    import pandas as pd

    from bench.reports.load import load_run

    try:
        return load_run(run_dir, run_id)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise GateError(f"{run_dir}: not a readable bench results database ({one_line(exc)})") from None


def _checkpoint_hash(data: Any, codec: str) -> str | None:
    """The checkpoint hash a run recorded for a codec key (None when it recorded none)."""
    info = data.codec_info.get(codec)
    return _opt_str(info.get("checkpoint_hash")) if isinstance(info, dict) else None


def _scores(g: Any, coded: Any) -> dict[str, Any]:
    """Per-item values, errors and measured kbps of one (codec, op) group of results rows."""
    values: dict[str, dict[str, float | None]] = {}
    errors: dict[str, dict[str, str]] = {}
    for r in g.itertuples():
        v = _num(r.value) if r.status == "ok" else None
        values.setdefault(r.metric, {})[r.item_id] = v
        if v is None:
            errors.setdefault(r.metric, {})[r.item_id] = str(r.error or "no value")
    kbps = {r.item_id: _num(r.measured_kbps) for r in coded.itertuples()}
    if not kbps:
        kbps = {r.item_id: _num(r.measured_kbps) for r in g.drop_duplicates("item_id").itertuples()}
    return {"values": values, "errors": errors, "measured_kbps": kbps}


# --- baseline ---------------------------------------------------------------------------------

def _restrict(res: Any, column: str, wanted: list[str] | None, available: list[str], option: str) -> Any:
    """Results rows whose ``column`` is one of ``wanted`` (all rows when None); GateError for unknown names."""
    if not wanted:
        return res
    unknown = sorted(set(wanted) - set(res[column]))
    if unknown:
        raise GateError(f"{option}: {', '.join(unknown)} not in the run; the run has {', '.join(available)}")
    return res[res[column].isin(wanted)]


def make_baseline(run_dir: str | Path, *, run_id: str | None = None, metrics: list[str] | None = None,
                  codecs: list[str] | None = None) -> dict[str, Any]:
    """The baseline document of a run (optionally restricted to some metrics and codec keys)."""
    data = _load_run(run_dir, run_id)
    res = _restrict(data.results, "metric", metrics, data.metrics, "--metrics")
    res = _restrict(res, "codec", codecs, data.codecs, "--codecs")
    if res.empty:
        raise GateError(f"{data.db_path}: no results to save as a baseline")
    entries = []
    coded = data.coded
    for (codec, op), g in res.groupby(["codec", "op"], sort=True):
        scores = _scores(g, coded[(coded["codec"] == codec) & (coded["op"] == op)])
        nominal = _num(g["nominal_kbps"].dropna().iloc[0]) if g["nominal_kbps"].notna().any() else None
        entries.append({"codec": codec, "op": op, "nominal_kbps": nominal, **scores,
                        "checkpoint_hash": _checkpoint_hash(data, codec)})
    used_metrics = sorted(set(res["metric"]))
    items = [{"id": r.item_id, "cluster": _opt_str(r.cluster), "domain": _opt_str(r.domain),
              "dataset": _opt_str(r.dataset), "split": _opt_str(getattr(r, "split", None))}
             for r in data.items.itertuples()]
    settings = data.manifest.get("settings") if isinstance(data.manifest.get("settings"), dict) else {}
    doc = {
        "format": BASELINE_FORMAT, "version": BASELINE_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": str(Path(run_dir).resolve()), "run_id": data.run_id,
        "settings": settings,
        "dataset": next(iter(sorted(set(data.items["dataset"]))), None),
        "split": next(iter(sorted(set(data.items["split"].dropna()))), None),
        "item_list_sha256": _opt_str(data.manifest.get("item_list_sha256")),
        "metrics": {m: {"higher_is_better": data.info(m).higher_is_better, "unit": data.info(m).unit}
                    for m in used_metrics},
        "items": items,
        "entries": entries,
    }
    validate_baseline(doc, f"made from {data.db_path}")  # never write a baseline the gate would refuse
    return doc


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
    return {list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _require(ok: bool, where: str, field: str, what: str, value: Any) -> None:
    """Raise ``baseline WHERE: field 'FIELD' must be WHAT, got ...`` unless ``ok``."""
    if not ok:
        raise GateError(f"baseline {where}: field '{field}' must be {what}, got {_kind(value)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_opt_number(v: Any) -> bool:
    return v is None or _is_number(v)


def _is_opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_name(v: Any) -> bool:
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
    metrics = doc.get("metrics")
    _require(isinstance(metrics, dict) and bool(metrics), where, "metrics", "a non-empty object", metrics)
    for name, info in metrics.items():
        _require(isinstance(info, dict), where, f"metrics.{name}", "an object", info)
        hib = info.get("higher_is_better")
        _require(isinstance(hib, bool), where, f"metrics.{name}.higher_is_better", "true or false", hib)
        _require(_is_opt_str(info.get("unit")), where, f"metrics.{name}.unit", "a string", info.get("unit"))
    return set(metrics)


def _check_items(doc: dict[str, Any], where: str) -> set[str]:
    """``items``: a non-empty list of {id, cluster, domain, dataset, split} with unique ids; returns the ids."""
    items = doc.get("items")
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
    entries = doc.get("entries")
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


# --- candidate --------------------------------------------------------------------------------

def _family(codec_key: str) -> str:
    return codec_key.split(":", 1)[0]


def _is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a file that starts with SQLite's header."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def is_run_dir(path: Path) -> bool:
    """Whether a candidate path names a run (a run directory, a ``.sqlite`` path or an SQLite file)."""
    if path.is_dir():
        return (path / "results.sqlite").is_file()
    return path.suffix == ".sqlite" or (path.is_file() and _is_sqlite_file(path))


def _candidate_kind(path: Path) -> str:
    """``"run"`` or ``"checkpoint"`` for an existing candidate path; GateError otherwise."""
    if not path.exists():
        raise GateError(f"{path}: no such checkpoint or run directory (--candidate)")
    if path.is_dir() and not (path / "results.sqlite").is_file():
        raise GateError(f"{path}: a folder without results.sqlite, so neither a run directory nor a checkpoint "
                        "(--candidate)")
    return "run" if is_run_dir(path) else "checkpoint"


def _check_codec(baseline: dict[str, Any], codec: str | None) -> None:
    """``--codec`` must name a codec family or key of the baseline."""
    if codec is None:
        return
    keys = {e["codec"] for e in baseline["entries"]}
    families = {_family(k) for k in keys}
    if codec not in keys and codec not in families:
        raise GateError(f"--codec {codec!r} names none of the baseline's codecs (it has {', '.join(sorted(families))})")


def candidate_spec(baseline: dict[str, Any], checkpoint: str, codec: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The ``--codecs`` selection that runs ``checkpoint`` at the baseline's operating points.

    Returns (selection string, [(baseline codec key, op)]) for the entries it replaces. The codec
    family is ``codec`` or the only family of the baseline that was loaded from a checkpoint.
    """
    if "," in checkpoint:
        raise GateError(f"checkpoint path {checkpoint!r} contains a comma, which --codecs cannot express")
    entries = baseline["entries"]
    families = sorted({_family(e["codec"]) for e in entries})
    if codec is None:
        with_ckpt = sorted({_family(e["codec"]) for e in entries if ":" in e["codec"]})
        pool = with_ckpt or families
        if len(pool) != 1:
            raise GateError(f"the baseline has codecs {', '.join(families)}; say which one the checkpoint is with --codec")
        codec = pool[0]
    chosen = [(e["codec"], e["op"]) for e in entries if _family(e["codec"]) == codec or e["codec"] == codec]
    if not chosen:
        raise GateError(f"--codec {codec!r} is not in the baseline (it has {', '.join(families)})")
    family = _family(chosen[0][0])
    spec = ",".join(f"{family}:{checkpoint}@{op}" for _, op in chosen)
    return spec, chosen


def run_candidate(baseline: dict[str, Any], checkpoint: str, *, codec: str | None = None,
                  out_dir: str | Path | None = None, metrics: list[str] | None = None,
                  run_fn: Callable[[Any], Path] | None = None, config_overrides: dict[str, Any] | None = None) -> Path:
    """Run the benchmark for a checkpoint on the baseline's items and settings; returns the run dir."""
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    spec, _ = candidate_spec(baseline, checkpoint, codec)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    kwargs = {k: v for k, v in (baseline.get("settings") or {}).items() if k in fields}
    if not kwargs.get("dataset") and baseline.get("dataset"):
        kwargs["dataset"] = baseline["dataset"]
    if not kwargs.get("split") and baseline.get("split"):
        kwargs["split"] = baseline["split"]
    wanted_metrics = metrics or sorted(baseline["metrics"])
    kwargs.update(codecs=spec, metrics=",".join(wanted_metrics), item_ids=[it["id"] for it in baseline["items"]],
                  limit=None, out_dir=str(out_dir) if out_dir else None, progress=False)
    kwargs.update(config_overrides or {})
    if kwargs.get("out_dir") is None:
        kwargs["out_dir"] = str(Path("runs") / f"gate-{Path(checkpoint).stem}")
    try:
        cfg = RunConfig(**{k: v for k, v in kwargs.items() if k in fields})
        return Path((run_fn or run_benchmark)(cfg))
    except Exception as exc:  # noqa: BLE001 - any runner failure is a gate error, not a regression
        raise GateError(f"running the candidate failed: {type(exc).__name__}: {one_line(exc)}") from exc


def candidate_values(run_dir: str | Path, baseline: dict[str, Any], *, codec: str | None = None,
                     run_id: str | None = None) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, str]]:
    """Per baseline entry (codec key, op): the candidate's values and kbps, matched by key.

    A candidate codec key that differs from the baseline's (another checkpoint path) is matched by
    codec family and operating point when that is unique. Returns (matched, key mapping).
    """
    data = _load_run(run_dir, run_id)
    res = data.results
    cand_keys = sorted(set(res["codec"]))
    mapping: dict[str, str] = {}
    for key in sorted({e["codec"] for e in baseline["entries"]}):
        if codec is not None and _family(key) != codec and key != codec:
            continue
        if key in cand_keys:
            mapping[key] = key
            continue
        same_family = [c for c in cand_keys if _family(c) == _family(key)]
        if len(same_family) == 1:
            mapping[key] = same_family[0]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in baseline["entries"]:
        ck = mapping.get(e["codec"])
        if ck is None:
            continue
        g = res[(res["codec"] == ck) & (res["op"] == e["op"])]
        if g.empty:
            continue
        scores = _scores(g, data.coded[(data.coded["codec"] == ck) & (data.coded["op"] == e["op"])])
        out[(e["codec"], e["op"])] = {"codec": ck, **scores, "checkpoint_hash": _checkpoint_hash(data, ck)}
    return out, mapping


# --- decision ---------------------------------------------------------------------------------

def _margin_value(tok: str) -> tuple[float, bool]:
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


def _margin_tokens(text: str | None) -> tuple[tuple[float, bool] | None, dict[str, tuple[float, bool]]]:
    """(default margin or None, {metric: margin}) of a ``--margin`` string.

    ValueError when it is garbage or ambiguous (two defaults, one metric twice, a nameless ``=v``).
    """
    default: tuple[float, bool] | None = None
    per: dict[str, tuple[float, bool]] = {}
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


def margin_arg(text: str) -> str:
    """argparse type of ``--margin``: the text itself, once its syntax is known to be sound."""
    try:
        _margin_tokens(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_margins(text: str | None, metrics: list[str]) -> dict[str, tuple[float, bool]]:
    """``"0.1"``, ``"1%"`` or ``"si_sdr=0.5,mel_distance=2%"`` -> {metric: (value, is_relative)}.

    A bare value sets the default for every metric; ``metric=value`` entries override it.
    Relative margins are a fraction of the baseline mean's magnitude.
    """
    try:
        default, per = _margin_tokens(text)
    except ValueError as exc:
        raise GateError(f"--margin: {exc}") from None
    for name in per:
        if name not in metrics:
            raise GateError(f"--margin names metric {name!r}, not gated here ({', '.join(metrics)})")
    default = default or _margin_value(DEFAULT_MARGIN)
    return {m: per.get(m, default) for m in metrics}


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


def _check(base_vals: dict[str, float | None], cand_vals: dict[str, float | None], cand_errors: dict[str, str],
           clusters: dict[str, str], higher_is_better: bool, margin: tuple[float, bool], confidence: float,
           n_boot: int, seed: int, strict: bool) -> dict[str, Any]:
    """The non-inferiority decision for one metric at one operating point."""
    import numpy as np

    from bench.reports import stats

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
        cl = [clusters.get(i, i) for i in common]
        bound = {"confidence": confidence, "n_boot": n_boot, "seed": seed}
        out.update(mean_improvement=float(diff.mean()), n_clusters=len(set(cl)),
                   lower_bound=stats.one_sided_bound(diff, cl, side="lower", **bound),
                   upper_bound=stats.one_sided_bound(diff, cl, side="upper", **bound))
    out["status"], out["reason"] = _decide(common, newly_failed, not_run, out["failure_reasons"], out["lower_bound"],
                                           out["upper_bound"], m_value, confidence, strict)
    if common and out["n_clusters"] < 2 and out["status"] != "regression":
        out["reason"] += f" (only {out['n_clusters']} cluster: no resampling possible)"
    return out


def _checked(option: str, parse: Callable[[str], Any], value: Any) -> Any:
    """A programmatic argument checked by the same type as its command-line option."""
    try:
        return parse(str(value))
    except argparse.ArgumentTypeError as exc:
        raise GateError(f"{option}: {exc}") from None


def _check_options(confidence: float, kbps_tolerance: float, n_boot: int, seed: int) -> tuple[float, float, int, int]:
    """The numeric options, range-checked as on the command line (for programmatic callers)."""
    return (_checked("--confidence", CONFIDENCE, confidence),
            _checked("--kbps-tolerance", KBPS_TOLERANCE, kbps_tolerance),
            _checked("--bootstrap", BOOTSTRAP, n_boot),
            _checked("--seed", argtypes.non_negative_int, seed))


def _gated_metrics(baseline: dict[str, Any], metrics: list[str] | None) -> list[str]:
    """The metrics to gate on: ``metrics`` (each one of the baseline's) or all of the baseline's."""
    all_metrics = sorted(baseline["metrics"])
    chosen = list(metrics or all_metrics)
    unknown = sorted(set(chosen) - set(all_metrics))
    if unknown:
        raise GateError(f"--metrics {', '.join(unknown)} not in the baseline ({', '.join(all_metrics)})")
    return chosen


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


def evaluate(baseline: dict[str, Any], candidate: dict[tuple[str, str], dict[str, Any]], *,
             metrics: list[str] | None = None, margin: str | None = None, confidence: float = DEFAULT_CONFIDENCE,
             kbps_tolerance: float = DEFAULT_KBPS_TOLERANCE, strict: bool = False, n_boot: int = 2000,
             seed: int = 0) -> dict[str, Any]:
    """The verdict: one check per (entry, metric) plus a bitrate check per entry."""
    confidence, kbps_tolerance, n_boot, seed = _check_options(confidence, kbps_tolerance, n_boot, seed)
    metrics = _gated_metrics(baseline, metrics)
    margins = parse_margins(margin, metrics)
    clusters = {it["id"]: str(it.get("cluster") or it["id"]) for it in baseline["items"]}
    checks = []
    compared_entries = []
    for e in baseline["entries"]:
        key = (e["codec"], e["op"])
        if key not in candidate:
            continue
        cand = candidate[key]
        compared_entries.append({"baseline_codec": e["codec"], "candidate_codec": cand["codec"], "op": e["op"],
                                 "baseline_checkpoint_hash": e.get("checkpoint_hash"),
                                 "candidate_checkpoint_hash": cand.get("checkpoint_hash")})
        kbps = _kbps_check(e, cand, kbps_tolerance)
        checks += [kbps] if kbps else []
        for m in metrics:
            bv = e["values"].get(m)
            if bv is None:
                continue
            info = baseline["metrics"][m]
            res = _check(bv, cand["values"].get(m, {}), cand["errors"].get(m, {}), clusters,
                         bool(info["higher_is_better"]), margins[m], confidence, n_boot, seed, strict)
            checks.append({"codec": e["codec"], "op": e["op"], "metric": m,
                           "higher_is_better": bool(info["higher_is_better"]), **res})
    if not compared_entries:
        raise GateError("the candidate has none of the baseline's codec operating points "
                        f"({', '.join(sorted({x['codec'] for x in baseline['entries']}))})")
    if not any(c["metric"] in metrics for c in checks):
        raise GateError(f"the compared operating points have no baseline values for --metrics {', '.join(metrics)}")
    not_compared = [f"{e['codec']}@{e['op']}" for e in baseline["entries"] if (e["codec"], e["op"]) not in candidate]
    statuses = [c["status"] for c in checks]
    if "error" in statuses:
        verdict = "error"
    elif "regression" in statuses:
        verdict = "regression"
    else:
        verdict = "pass"
    return {
        "format": "bench-gate-verdict", "version": 1, "verdict": verdict,
        "reason": _verdict_reason(verdict, checks),
        "exit_code": {"pass": EXIT_PASS, "regression": EXIT_REGRESSION}.get(verdict, EXIT_ERROR),
        "confidence": confidence, "strict": strict, "kbps_tolerance": kbps_tolerance,
        "metrics": metrics, "entries": compared_entries, "not_compared": not_compared,
        "counts": {s: statuses.count(s) for s in ("pass", "inconclusive", "regression", "error")},
        "checks": checks,
    }


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
    v = _num(x)
    return "–" if v is None else f"{v:.4g}"


def _check_table(checks: list[dict[str, Any]], icon: dict[str, str]) -> list[str]:
    from bench.reports.load import display_codec

    lines = ["| codec@op | metric | baseline | candidate | Δ (better +) | one-sided bounds | margin | status |",
             "|---|---|---|---|---|---|---|---|"]
    for ch in checks:
        bound = f"[{_f(ch.get('lower_bound'))}, {_f(ch.get('upper_bound'))}]" if "lower_bound" in ch else ""
        lines.append(f"| {display_codec(ch['codec'])}@{ch['op']} | {ch['metric']} | {_f(ch.get('baseline_mean'))} | "
                     f"{_f(ch.get('candidate_mean'))} | {_f(ch.get('mean_improvement'))} | {bound} | "
                     f"{ch.get('margin_spec', '')} | {icon.get(ch['status'], '')} {ch['status']} |")
    return lines


def markdown_summary(verdict: dict[str, Any]) -> str:
    """A short summary a CI system can post as a comment."""
    icon = {"pass": "✅", "regression": "❌", "error": "⚠️", "inconclusive": "➖"}
    c = verdict.get("counts", {})
    head = f"### Checkpoint gate: {icon.get(verdict['verdict'], '')} {verdict['verdict'].upper()}"
    if verdict.get("error") and not verdict.get("checks"):
        return f"{head}\n\nError: {verdict['error']}\n"
    counts = (f"{c.get('pass', 0)} pass, {c.get('inconclusive', 0)} inconclusive, {c.get('regression', 0)} "
              f"regression, {c.get('error', 0)} error; one-sided {verdict.get('confidence', 0.95):.0%} "
              "cluster-bootstrap bounds on per-item differences (positive = better).")
    lines = [head, ""] + ([verdict["reason"], ""] if verdict.get("reason") else []) + [counts, ""]
    checks = verdict.get("checks", [])
    order = {"regression": 0, "error": 1, "inconclusive": 2, "pass": 3}
    checks = sorted(checks, key=lambda x: (order.get(x["status"], 9), x["codec"], x["op"], x["metric"]))
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


def gate(baseline_path: str | Path, candidate: str, *, codec: str | None = None, metrics: list[str] | None = None,
         margin: str | None = None, confidence: float = DEFAULT_CONFIDENCE, strict: bool = False,
         kbps_tolerance: float = DEFAULT_KBPS_TOLERANCE, out_dir: str | Path | None = None,
         n_boot: int = 2000, seed: int = 0, run_fn: Callable[[Any], Path] | None = None,
         config_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Programmatic gate; returns the verdict dict (``verdict["exit_code"]`` is the process exit code).

    Everything about the baseline and the options is checked before a checkpoint is run.
    """
    _check_options(confidence, kbps_tolerance, n_boot, seed)
    baseline = load_baseline(baseline_path)
    parse_margins(margin, _gated_metrics(baseline, metrics))
    _check_codec(baseline, codec)
    path = Path(candidate)
    source = _candidate_kind(path)
    if source == "run":
        run_dir = path
    else:
        run_dir = run_candidate(baseline, str(path.resolve()), codec=codec, out_dir=out_dir, metrics=metrics,
                                run_fn=run_fn, config_overrides=config_overrides)
    cand, mapping = candidate_values(run_dir, baseline, codec=codec if source == "run" else None)
    verdict = evaluate(baseline, cand, metrics=metrics, margin=margin, confidence=confidence,
                       kbps_tolerance=kbps_tolerance, strict=strict, n_boot=n_boot, seed=seed)
    verdict.update(baseline=str(Path(baseline_path).resolve()), candidate=str(path.resolve()),
                   candidate_kind=source, candidate_run=str(Path(run_dir).resolve()), codec_mapping=mapping)
    return verdict


# --- CLI --------------------------------------------------------------------------------------

def name_list(text: str) -> list[str]:
    """argparse type: comma-separated names (``si_sdr,pesq_wb``); empty entries are dropped, one is needed."""
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _distinct_paths(reads: dict[str, str | None], writes: dict[str, str | None]) -> None:
    """Refuse an output path that is an input or another output (it would be overwritten)."""
    seen = {Path(p).resolve(): opt for opt, p in reads.items() if p}
    for opt, p in writes.items():
        if not p:
            continue
        other = seen.get(Path(p).resolve())
        if other:
            raise GateError(f"{opt} {p} is also {other}; it would be overwritten")
        seen[Path(p).resolve()] = opt


def add_baseline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["save"], help="'save': write a baseline from a run")
    p.add_argument("run_dir", help="run directory written by 'bench run'")
    p.add_argument("--out", required=True, type=argtypes.writable_file,
                   help="baseline JSON to write (commit it next to your CI config)")
    p.add_argument("--metrics", type=name_list, default=None,
                   help="comma-separated metrics to keep (default: all of the run)")
    p.add_argument("--codecs", type=name_list, default=None,
                   help="comma-separated codec keys to keep (default: all of the run)")
    p.add_argument("--run-id", default=None, help="which run of the file (default: the latest)")


def baseline_main(args: argparse.Namespace) -> int:
    """``bench baseline save``: read the run (read-only) and write its baseline document."""
    from bench.reports.load import resolve_db

    _distinct_paths({"the run's database": str(resolve_db(args.run_dir))}, {"--out": args.out})
    doc = make_baseline(args.run_dir, run_id=args.run_id, metrics=args.metrics, codecs=args.codecs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
    n_pts = len(doc["entries"])
    print(f"baseline: {out} ({len(doc['items'])} items, {n_pts} codec operating points, metrics {', '.join(doc['metrics'])})")
    return EXIT_PASS


def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", required=True, help="baseline JSON from 'bench baseline save'")
    p.add_argument("--candidate", required=True,
                   help="a checkpoint (run on the baseline's items) or a run directory to compare")
    p.add_argument("--codec", default=None,
                   help="codec family the checkpoint belongs to (default: the baseline's only checkpoint codec)")
    p.add_argument("--metrics", type=name_list, default=None,
                   help="comma-separated metrics to gate on (default: all of the baseline)")
    p.add_argument("--margin", type=margin_arg, default=None,
                   help=f"allowed degradation: '0.1' (metric units), '1%%' (of the baseline mean), or "
                        f"'si_sdr=0.5,pesq_wb=2%%' per metric (default {DEFAULT_MARGIN.replace('%', '%%')})")
    p.add_argument("--confidence", type=CONFIDENCE, default=DEFAULT_CONFIDENCE,
                   help="one-sided confidence, in (0.5, 1) (default 0.95)")
    p.add_argument("--strict", action="store_true", help="count inconclusive checks as regressions")
    p.add_argument("--kbps-tolerance", type=KBPS_TOLERANCE, default=DEFAULT_KBPS_TOLERANCE,
                   help="allowed relative increase of measured kbps, >= 0 (default 0.05)")
    p.add_argument("--out", type=argtypes.writable_dir, default=None,
                   help="run directory for a checkpoint candidate (default runs/gate-NAME)")
    p.add_argument("--json", type=argtypes.writable_file, default=None, help="write the JSON verdict here")
    p.add_argument("--markdown", type=argtypes.writable_file, default=None, help="write the markdown summary here")
    p.add_argument("--bootstrap", type=BOOTSTRAP, default=2000,
                   help=f"bootstrap resamples, 1 .. {MAX_BOOTSTRAP} (default 2000)")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=0)
    p.add_argument("--cache-dir", type=argtypes.writable_dir, default=None,
                   help="reconstruction cache for a checkpoint run")
    p.add_argument("--device", type=argtypes.torch_device, default=None,
                   help="torch device for a checkpoint run: cpu, cuda, cuda:1 (default: the baseline's)")


def _write_outputs(verdict: dict[str, Any], json_path: str | None, markdown_path: str | None) -> str:
    """Write the JSON verdict and the markdown summary where asked; returns the summary."""
    text = markdown_summary(verdict)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(json_safe(verdict), indent=1, default=str, allow_nan=False))
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(text)
    return text


def gate_main(args: argparse.Namespace) -> int:
    """``bench gate``: the verdict on stdout (and in --json/--markdown); exit 0, 1 or 2."""
    _distinct_paths({"--baseline": args.baseline, "--candidate": args.candidate},
                    {"--json": args.json, "--markdown": args.markdown})
    overrides = {k: v for k, v in (("cache_dir", args.cache_dir), ("device", args.device)) if v}
    try:
        verdict = gate(args.baseline, args.candidate, codec=args.codec, metrics=args.metrics,
                       margin=args.margin, confidence=args.confidence, strict=args.strict,
                       kbps_tolerance=args.kbps_tolerance, out_dir=args.out, n_boot=args.bootstrap,
                       seed=args.seed, config_overrides=overrides)
    except UserError as exc:  # still write the (error) verdict, so CI can post it
        verdict = {"format": "bench-gate-verdict", "version": 1, "verdict": "error", "exit_code": EXIT_ERROR,
                   "error": one_line(exc), "checks": [], "counts": {}}
    print(_write_outputs(verdict, args.json, args.markdown))
    if verdict["exit_code"] == EXIT_ERROR:  # a failed gate run or an undecidable comparison: say why, once
        print(f"error: {one_line(verdict.get('error') or verdict['reason'])}", file=sys.stderr)
    return int(verdict["exit_code"])
