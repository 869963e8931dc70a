"""The candidate: a run directory read as it is, or a checkpoint run on the baseline's items.

A checkpoint is run by the benchmark pipeline with the baseline's settings and item list, in
place of the baseline's codec: ``FAMILY:CHECKPOINT@OP`` for each of its operating points (the
reconstruction cache makes reruns cheap). Either way, the candidate's per-item values are then
matched to the baseline's entries by codec key, or by codec family and operating point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from bench.errors import one_line
from bench.gate.common import GateError, codec_family
from bench.gate.runs import checkpoint_hash, entry_scores, load_gate_run
from bench.gate.set_level import candidate_set_values


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


def candidate_kind(path: Path) -> str:
    """``"run"`` or ``"checkpoint"`` for an existing candidate path; GateError otherwise."""
    if not path.exists():
        raise GateError(f"{path}: no such checkpoint or run directory (--candidate)")
    if path.is_dir() and not (path / "results.sqlite").is_file():
        raise GateError(f"{path}: a folder without results.sqlite, so neither a run directory nor a checkpoint "
                        "(--candidate)")
    return "run" if is_run_dir(path) else "checkpoint"


def check_codec(baseline: dict[str, Any], codec: str | None) -> None:
    """``--codec`` must name a codec family or key of the baseline (checked before anything is run)."""
    if codec is None:
        return
    keys = {e["codec"] for e in baseline["entries"]}
    families = {codec_family(k) for k in keys}
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
    families = sorted({codec_family(e["codec"]) for e in entries})
    if codec is None:
        with_ckpt = sorted({codec_family(e["codec"]) for e in entries if ":" in e["codec"]})
        pool = with_ckpt or families
        if len(pool) != 1:
            raise GateError(f"the baseline has codecs {', '.join(families)}; say which one the checkpoint is with --codec")
        codec = pool[0]
    chosen = [(e["codec"], e["op"]) for e in entries if codec_family(e["codec"]) == codec or e["codec"] == codec]
    if not chosen:
        raise GateError(f"--codec {codec!r} is not in the baseline (it has {', '.join(families)})")
    family = codec_family(chosen[0][0])
    spec = ",".join(f"{family}:{checkpoint}@{op}" for _, op in chosen)
    return spec, chosen


def _run_settings(baseline: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """The baseline run's settings that are RunConfig fields, with its dataset and split filled in."""
    kwargs = {k: v for k, v in (baseline.get("settings") or {}).items() if k in fields}
    if not kwargs.get("dataset") and baseline.get("dataset"):
        kwargs["dataset"] = baseline["dataset"]
    if not kwargs.get("split") and baseline.get("split"):
        kwargs["split"] = baseline["split"]
    return kwargs


def run_candidate(baseline: dict[str, Any], checkpoint: str, *, codec: str | None = None,
                  out_dir: str | Path | None = None, metrics: list[str] | None = None,
                  run_fn: Callable[[Any], Path] | None = None, config_overrides: dict[str, Any] | None = None) -> Path:
    """Run the benchmark for a checkpoint on the baseline's items and settings; returns the run dir."""
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    spec, _ = candidate_spec(baseline, checkpoint, codec)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    kwargs = _run_settings(baseline, fields)
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


def _codec_mapping(baseline: dict[str, Any], cand_keys: list[str], codec: str | None) -> dict[str, str]:
    """{baseline codec key: candidate codec key}: the same key, else the only candidate key of its family."""
    mapping: dict[str, str] = {}
    for key in sorted({e["codec"] for e in baseline["entries"]}):
        if codec is not None and codec_family(key) != codec and key != codec:
            continue
        if key in cand_keys:
            mapping[key] = key
            continue
        same_family = [c for c in cand_keys if codec_family(c) == codec_family(key)]
        if len(same_family) == 1:
            mapping[key] = same_family[0]
    return mapping


def candidate_values(run_dir: str | Path, baseline: dict[str, Any], *, codec: str | None = None,
                     run_id: str | None = None) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, str]]:
    """Per baseline entry (codec key, op): the candidate's values and kbps, matched by key.

    A candidate codec key that differs from the baseline's (another checkpoint path) is matched by
    codec family and operating point when that is unique. Returns (matched, key mapping).
    """
    data = load_gate_run(run_dir, run_id)
    res = data.results
    mapping = _codec_mapping(baseline, sorted(set(res["codec"])), codec)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in baseline["entries"]:
        ck = mapping.get(e["codec"])
        if ck is None:
            continue
        g = res[(res["codec"] == ck) & (res["op"] == e["op"])]
        if g.empty:
            continue
        scores = entry_scores(g, data.coded[(data.coded["codec"] == ck) & (data.coded["op"] == e["op"])])
        out[(e["codec"], e["op"])] = {"codec": ck, **scores, "checkpoint_hash": checkpoint_hash(data, ck),
                                      "set_values": candidate_set_values(data, ck, e["op"])}
    return out, mapping
