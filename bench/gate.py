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
baseline scored but the candidate failed on count as regressions of their own; a candidate that
spends more bits than the baseline (beyond ``--kbps-tolerance``) fails too, since a quality
comparison at a higher rate proves nothing.

Exit codes: 0 pass, 1 regression, 2 error. Writes a JSON verdict and a short markdown summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench.errors import UserError

BASELINE_FORMAT = "bench-baseline"
BASELINE_VERSION = 1
DEFAULT_MARGIN = "1%"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_KBPS_TOLERANCE = 0.05

EXIT_PASS, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


class GateError(UserError, RuntimeError):
    """A problem that prevents a verdict (bad baseline, missing items, failed run): exit code 2."""


def _num(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --- baseline ---------------------------------------------------------------------------------

def make_baseline(run_dir: str | Path, *, run_id: str | None = None, metrics: list[str] | None = None,
                  codecs: list[str] | None = None) -> dict[str, Any]:
    """The baseline document of a run (optionally restricted to some metrics and codec keys)."""
    from bench.reports.load import load_run

    data = load_run(run_dir, run_id)
    res = data.results
    if metrics:
        unknown = sorted(set(metrics) - set(res["metric"]))
        if unknown:
            raise GateError(f"metrics not in the run: {', '.join(unknown)}; the run has {', '.join(data.metrics)}")
        res = res[res["metric"].isin(metrics)]
    if codecs:
        unknown = sorted(set(codecs) - set(res["codec"]))
        if unknown:
            raise GateError(f"codecs not in the run: {', '.join(unknown)}; the run has {', '.join(data.codecs)}")
        res = res[res["codec"].isin(codecs)]
    if res.empty:
        raise GateError(f"{data.db_path}: no results to save as a baseline")
    entries = []
    coded = data.coded
    for (codec, op), g in res.groupby(["codec", "op"], sort=True):
        values: dict[str, dict[str, float | None]] = {}
        errors: dict[str, dict[str, str]] = {}
        for r in g.itertuples():
            v = _num(r.value) if r.status == "ok" else None
            values.setdefault(r.metric, {})[r.item_id] = v
            if v is None:
                errors.setdefault(r.metric, {})[r.item_id] = str(r.error or "no value")
        c = coded[(coded["codec"] == codec) & (coded["op"] == op)]
        kbps = {r.item_id: _num(r.measured_kbps) for r in c.itertuples()}
        if not kbps:
            kbps = {r.item_id: _num(r.measured_kbps) for r in g.drop_duplicates("item_id").itertuples()}
        nominal = _num(g["nominal_kbps"].dropna().iloc[0]) if g["nominal_kbps"].notna().any() else None
        entries.append({"codec": codec, "op": op, "nominal_kbps": nominal, "measured_kbps": kbps,
                        "values": values, "errors": errors,
                        "checkpoint_hash": data.codec_info.get(codec, {}).get("checkpoint_hash")})
    used_metrics = sorted(set(res["metric"]))
    items = [{"id": r.item_id, "cluster": r.cluster, "domain": r.domain, "dataset": r.dataset,
              "split": getattr(r, "split", None)} for r in data.items.itertuples()]
    settings = data.manifest.get("settings") if isinstance(data.manifest.get("settings"), dict) else {}
    return {
        "format": BASELINE_FORMAT, "version": BASELINE_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": str(Path(run_dir).resolve()), "run_id": data.run_id,
        "settings": settings,
        "dataset": next(iter(sorted(set(data.items["dataset"]))), None),
        "split": next(iter(sorted(set(data.items["split"].dropna()))), None),
        "item_list_sha256": data.manifest.get("item_list_sha256"),
        "metrics": {m: {"higher_is_better": data.info(m).higher_is_better, "unit": data.info(m).unit}
                    for m in used_metrics},
        "items": items,
        "entries": entries,
    }


def load_baseline(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise GateError(f"{p}: baseline not found (make one with 'bench baseline save RUN_DIR --out {p}')")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GateError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise GateError(f"{p}: not a bench baseline (format field is {doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != BASELINE_VERSION:
        raise GateError(f"{p}: baseline version {doc.get('version')}, this build reads {BASELINE_VERSION}")
    for key in ("items", "entries", "metrics"):
        if not doc.get(key):
            raise GateError(f"{p}: baseline has no {key}")
    return doc


# --- candidate --------------------------------------------------------------------------------

def _family(codec_key: str) -> str:
    return codec_key.split(":", 1)[0]


def is_run_dir(path: Path) -> bool:
    return (path.is_dir() and (path / "results.sqlite").exists()) or path.suffix == ".sqlite"


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
    from bench.runner import RunConfig, run_benchmark

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
    cfg = RunConfig(**{k: v for k, v in kwargs.items() if k in fields})
    try:
        return Path((run_fn or run_benchmark)(cfg))
    except Exception as exc:  # noqa: BLE001 - any runner failure is a gate error, not a regression
        raise GateError(f"running the candidate failed: {type(exc).__name__}: {exc}") from exc


def candidate_values(run_dir: str | Path, baseline: dict[str, Any], *, codec: str | None = None,
                     run_id: str | None = None) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, str]]:
    """Per baseline entry (codec key, op): the candidate's values and kbps, matched by key.

    A candidate codec key that differs from the baseline's (another checkpoint path) is matched by
    codec family and operating point when that is unique. Returns (matched, key mapping).
    """
    from bench.reports.load import load_run

    data = load_run(run_dir, run_id)
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
        values: dict[str, dict[str, float | None]] = {}
        errors: dict[str, dict[str, str]] = {}
        for r in g.itertuples():
            v = _num(r.value) if r.status == "ok" else None
            values.setdefault(r.metric, {})[r.item_id] = v
            if v is None:
                errors.setdefault(r.metric, {})[r.item_id] = str(r.error or "no value")
        c = data.coded[(data.coded["codec"] == ck) & (data.coded["op"] == e["op"])]
        kbps = {r.item_id: _num(r.measured_kbps) for r in c.itertuples()}
        if not kbps:
            kbps = {r.item_id: _num(r.measured_kbps) for r in g.drop_duplicates("item_id").itertuples()}
        out[(e["codec"], e["op"])] = {"codec": ck, "values": values, "errors": errors, "measured_kbps": kbps,
                                      "checkpoint_hash": data.codec_info.get(ck, {}).get("checkpoint_hash")}
    return out, mapping


# --- decision ---------------------------------------------------------------------------------

def parse_margins(text: str | None, metrics: list[str]) -> dict[str, tuple[float, bool]]:
    """``"0.1"``, ``"1%"`` or ``"si_sdr=0.5,mel_distance=2%"`` -> {metric: (value, is_relative)}.

    A bare value sets the default for every metric; ``metric=value`` entries override it.
    Relative margins are a fraction of the baseline mean's magnitude.
    """
    def one(tok: str) -> tuple[float, bool]:
        tok = tok.strip()
        rel = tok.endswith("%")
        try:
            v = float(tok.rstrip("%"))
        except ValueError as exc:
            raise GateError(f"--margin: cannot read {tok!r} as a number or percentage") from exc
        if v < 0 or not math.isfinite(v):
            raise GateError(f"--margin must be a non-negative number, got {tok!r}")
        return (v / 100.0 if rel else v), rel

    default = one(DEFAULT_MARGIN)
    per: dict[str, tuple[float, bool]] = {}
    for tok in [t for t in (text or "").split(",") if t.strip()]:
        if "=" in tok:
            name, val = tok.split("=", 1)
            name = name.strip()
            if name not in metrics:
                raise GateError(f"--margin names metric {name!r}, not gated here ({', '.join(metrics)})")
            per[name] = one(val)
        else:
            default = one(tok)
    return {m: per.get(m, default) for m in metrics}


def _check(base_vals: dict[str, float | None], cand_vals: dict[str, float | None], clusters: dict[str, str],
           higher_is_better: bool, margin: tuple[float, bool], confidence: float, n_boot: int, seed: int,
           strict: bool) -> dict[str, Any]:
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
    }
    if not common:
        out.update(status="error", reason="no item scored by both baseline and candidate",
                   mean_improvement=math.nan, lower_bound=math.nan, upper_bound=math.nan, n_clusters=0)
        return out
    diff = sign * (np.array([cand_vals[i] for i in common]) - np.array([base_vals[i] for i in common]))
    cl = [clusters.get(i, i) for i in common]
    n_clusters = len(set(cl))
    lower = stats.one_sided_bound(diff, cl, confidence=confidence, side="lower", n_boot=n_boot, seed=seed)
    upper = stats.one_sided_bound(diff, cl, confidence=confidence, side="upper", n_boot=n_boot, seed=seed)
    out.update(mean_improvement=float(diff.mean()), lower_bound=lower, upper_bound=upper, n_clusters=n_clusters)
    if newly_failed:
        out.update(status="regression", reason=f"candidate failed on {len(newly_failed)} item(s) the baseline scored")
    elif not_run:
        out.update(status="error", reason=f"candidate has no result for {len(not_run)} item(s) the baseline scored")
    elif upper < -m_value:
        out.update(status="regression", reason=f"worse by more than the margin: upper {confidence:.0%} bound "
                                                f"{upper:+.4g} < -{m_value:.4g}")
    elif lower >= -m_value:
        out.update(status="pass", reason=f"not worse than the margin: lower {confidence:.0%} bound {lower:+.4g} >= -{m_value:.4g}")
    else:
        out.update(status="regression" if strict else "inconclusive",
                   reason=f"confidence bounds [{lower:+.4g}, {upper:+.4g}] straddle -{m_value:.4g}"
                          + ("; --strict counts this as a regression" if strict else "; passes (use --strict to fail)"))
    if n_clusters < 2 and out["status"] != "regression":
        out["reason"] += f" (only {n_clusters} cluster: no resampling possible)"
    return out


def evaluate(baseline: dict[str, Any], candidate: dict[tuple[str, str], dict[str, Any]], *,
             metrics: list[str] | None = None, margin: str | None = None, confidence: float = DEFAULT_CONFIDENCE,
             kbps_tolerance: float = DEFAULT_KBPS_TOLERANCE, strict: bool = False, n_boot: int = 2000,
             seed: int = 0) -> dict[str, Any]:
    """The verdict: one check per (entry, metric) plus a bitrate check per entry."""
    import numpy as np

    all_metrics = sorted(baseline["metrics"])
    metrics = metrics or all_metrics
    unknown = sorted(set(metrics) - set(all_metrics))
    if unknown:
        raise GateError(f"--metrics {', '.join(unknown)} not in the baseline ({', '.join(all_metrics)})")
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
        b_k = [v for i, v in e["measured_kbps"].items() if v is not None and cand["measured_kbps"].get(i) is not None]
        c_k = [cand["measured_kbps"][i] for i, v in e["measured_kbps"].items() if v is not None and cand["measured_kbps"].get(i) is not None]
        if b_k:
            bm, cm = float(np.mean(b_k)), float(np.mean(c_k))
            ok = cm <= bm * (1 + kbps_tolerance)
            checks.append({"codec": e["codec"], "op": e["op"], "metric": "measured_kbps", "status": "pass" if ok else "regression",
                           "baseline_mean": bm, "candidate_mean": cm, "n_items": len(b_k),
                           "reason": f"candidate {cm:.3f} kbps vs baseline {bm:.3f} kbps (tolerance +{kbps_tolerance:.0%})"})
        for m in metrics:
            bv = e["values"].get(m)
            if bv is None:
                continue
            info = baseline["metrics"][m]
            res = _check(bv, cand["values"].get(m, {}), clusters, bool(info["higher_is_better"]), margins[m],
                         confidence, n_boot, seed, strict)
            checks.append({"codec": e["codec"], "op": e["op"], "metric": m,
                           "higher_is_better": bool(info["higher_is_better"]), **res})
    if not compared_entries:
        raise GateError("the candidate has none of the baseline's codec operating points "
                        f"({', '.join(sorted({x['codec'] for x in baseline['entries']}))})")
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
    lines = [head, "",
             f"{c.get('pass', 0)} pass, {c.get('inconclusive', 0)} inconclusive, {c.get('regression', 0)} regression, "
             f"{c.get('error', 0)} error; one-sided {verdict.get('confidence', 0.95):.0%} cluster-bootstrap bounds "
             "on per-item differences (positive = better).", ""]
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
    """Programmatic gate; returns the verdict dict (``verdict["exit_code"]`` is the process exit code)."""
    baseline = load_baseline(baseline_path)
    path = Path(candidate)
    if is_run_dir(path):
        run_dir = path
        source = "run"
    elif path.exists():
        run_dir = run_candidate(baseline, str(path.resolve()), codec=codec, out_dir=out_dir, metrics=metrics,
                                run_fn=run_fn, config_overrides=config_overrides)
        source = "checkpoint"
    else:
        raise GateError(f"{candidate}: no such checkpoint or run directory")
    cand, mapping = candidate_values(run_dir, baseline, codec=codec if source == "run" else None)
    verdict = evaluate(baseline, cand, metrics=metrics, margin=margin, confidence=confidence,
                       kbps_tolerance=kbps_tolerance, strict=strict, n_boot=n_boot, seed=seed)
    verdict.update(baseline=str(Path(baseline_path).resolve()), candidate=str(path.resolve()),
                   candidate_kind=source, candidate_run=str(Path(run_dir).resolve()), codec_mapping=mapping)
    return verdict


# --- CLI --------------------------------------------------------------------------------------

def add_baseline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["save"], help="'save': write a baseline from a run")
    p.add_argument("run_dir", help="run directory written by 'bench run'")
    p.add_argument("--out", required=True, help="baseline JSON to write (commit it next to your CI config)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics to keep (default: all of the run)")
    p.add_argument("--codecs", default=None, help="comma-separated codec keys to keep (default: all of the run)")
    p.add_argument("--run-id", default=None, help="which run of the file (default: the latest)")


def baseline_main(args: argparse.Namespace) -> int:
    try:
        doc = make_baseline(args.run_dir, run_id=args.run_id,
                            metrics=[m.strip() for m in args.metrics.split(",")] if args.metrics else None,
                            codecs=[c.strip() for c in args.codecs.split(",")] if args.codecs else None)
    except (GateError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
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
    p.add_argument("--metrics", default=None, help="comma-separated metrics to gate on (default: all of the baseline)")
    p.add_argument("--margin", default=None,
                   help=f"allowed degradation: '0.1' (metric units), '1%%' (of the baseline mean), or "
                        f"'si_sdr=0.5,pesq_wb=2%%' per metric (default {DEFAULT_MARGIN.replace('%', '%%')})")
    p.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE, help="one-sided confidence (default 0.95)")
    p.add_argument("--strict", action="store_true", help="count inconclusive checks as regressions")
    p.add_argument("--kbps-tolerance", type=float, default=DEFAULT_KBPS_TOLERANCE,
                   help="allowed relative increase of measured kbps (default 0.05)")
    p.add_argument("--out", default=None, help="run directory for a checkpoint candidate (default runs/gate-NAME)")
    p.add_argument("--json", default=None, help="write the JSON verdict here")
    p.add_argument("--markdown", default=None, help="write the markdown summary here")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="reconstruction cache for a checkpoint run")
    p.add_argument("--device", default=None, help="torch device for a checkpoint run (default: the baseline's)")


def gate_main(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("cache_dir", args.cache_dir), ("device", args.device)) if v}
    try:
        if not 0.5 < args.confidence < 1.0:
            raise GateError(f"--confidence must be in (0.5, 1), got {args.confidence}")
        verdict = gate(args.baseline, args.candidate, codec=args.codec,
                       metrics=[m.strip() for m in args.metrics.split(",")] if args.metrics else None,
                       margin=args.margin, confidence=args.confidence, strict=args.strict,
                       kbps_tolerance=args.kbps_tolerance, out_dir=args.out, n_boot=args.bootstrap,
                       seed=args.seed, config_overrides=overrides)
    except (GateError, FileNotFoundError, ValueError) as exc:
        verdict = {"format": "bench-gate-verdict", "version": 1, "verdict": "error", "exit_code": EXIT_ERROR,
                   "error": str(exc), "checks": [], "counts": {}}
    text = markdown_summary(verdict)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(json_safe(verdict), indent=1, default=str, allow_nan=False))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
    print(text)
    if verdict.get("error"):
        print(f"error: {verdict['error']}", file=sys.stderr)
    return int(verdict["exit_code"])
