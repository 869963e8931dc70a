"""``bench score``: score reference/degraded files made outside the harness with the harness's metrics.

    bench score REF DEG [--domain speech|music|general] [--metrics LIST] [--transcript TEXT] [--json]
    bench score --pairs LIST.csv [--json] [--out RESULTS.csv] [--workers N]

Both forms go through :func:`bench.scoring.score_pair`, the pipeline ``bench run`` uses, so the numbers are
the same as the harness would give: channels mixed to mono, a constant delay estimated by
cross-correlation and removed (``--align``), both signals resampled to each metric's native rate with the
one resampler (soxr), trimmed to equal length; a metric that does not apply to the domain is skipped with
the reason, an item a metric cannot score is NaN with the reason.

Sample rates: when REF and DEG differ in rate, DEG is resampled to REF's rate first, so the comparison rate
of rate-agnostic metrics (mel, STFT, LSD, phase, SI-SDR) is the reference's rate.

Pairs CSV: a header row with columns ``ref`` and ``deg`` (paths, relative ones resolved against the CSV's
folder) and optional ``id``, ``domain``, ``transcript``. Missing ``domain`` falls back to ``--domain``.

Exit status: 0 when every pair was read (metric failures are results, not errors), 1 when a file could
not be read (the message names it), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOMAIN_CHOICES = ("speech", "music", "general")


@dataclass
class PairSpec:
    id: str
    ref: str
    deg: str
    domain: str
    transcript: str | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", nargs="?", help="reference (original) audio file")
    p.add_argument("deg", nargs="?", help="degraded (decoded) audio file")
    p.add_argument("--pairs", default=None, metavar="LIST.csv",
                   help="CSV with columns ref,deg[,id,domain,transcript] instead of REF DEG")
    p.add_argument("--domain", default="general", choices=DOMAIN_CHOICES,
                   help="content type; PESQ/STOI run on speech only (default: general)")
    p.add_argument("--metrics", default=None,
                   help="comma list of metric names, 'all' or 'default' (default: the run's default set)")
    p.add_argument("--transcript", default=None, help="reference transcript (enables WER/CER)")
    p.add_argument("--align", default="xcorr", choices=["xcorr", "report", "none"],
                   help="delay alignment before intrusive metrics (default xcorr: estimate and remove)")
    p.add_argument("--max-lag-s", type=float, default=None, help="largest delay searched (default 0.25 s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", default=None, help="also write one CSV row per pair and metric to this file")
    p.add_argument("--workers", type=int, default=1, help="processes for --pairs (default 1)")


def _resolve_metrics(spec: str | None) -> list:
    from bench.runner import resolve_metrics

    return resolve_metrics(spec)


def _read_pairs(path: str, default_domain: str) -> list[PairSpec]:
    csv_path = Path(path)
    if not csv_path.exists():
        raise FileNotFoundError(f"{path}: pairs file not found")
    base = csv_path.resolve().parent
    pairs = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = {c.strip().lower() for c in (reader.fieldnames or [])}
        if not {"ref", "deg"} <= fields:
            raise ValueError(f"{path}: needs a header with columns 'ref' and 'deg' (got {sorted(fields)})")
        for line_no, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            if not row.get("ref") or not row.get("deg"):
                raise ValueError(f"{path}:{line_no}: empty ref or deg")
            domain = row.get("domain") or default_domain
            if domain not in DOMAIN_CHOICES:
                raise ValueError(f"{path}:{line_no}: unknown domain {domain!r}; choose from {DOMAIN_CHOICES}")
            ref, deg = (str(p if Path(p).is_absolute() else base / p) for p in (row["ref"], row["deg"]))
            pairs.append(PairSpec(id=row.get("id") or Path(row["deg"]).stem, ref=ref, deg=deg, domain=domain,
                                  transcript=row.get("transcript") or None))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    seen: dict[str, int] = {}
    for pair in pairs:  # ids must be unique in the output; derived ones can collide
        seen[pair.id] = seen.get(pair.id, 0) + 1
        if seen[pair.id] > 1:
            pair.id = f"{pair.id}#{seen[pair.id]}"
    return pairs


def _load(path: str):
    from bench.audio import load_audio

    return load_audio(path)


def score_files(pair: PairSpec, metric_names: list[str], align: str = "xcorr",
                max_lag_s: float | None = None) -> dict[str, Any]:
    """Score one file pair; returns plain data (JSON-ready except NaN)."""
    from bench.audio import resample
    from bench.datasets.base import Item
    from bench.registry import METRICS
    from bench.scoring import DEFAULT_MAX_LAG_S, score_pair

    ref, deg = _load(pair.ref), _load(pair.deg)
    rate = ref.sample_rate_hz
    notes = []
    deg_samples = deg.samples
    if deg.sample_rate_hz != rate:
        deg_samples = resample(deg_samples, deg.sample_rate_hz, rate)
        notes.append(f"degraded resampled {deg.sample_rate_hz} -> {rate} Hz")
    if abs(deg_samples.shape[-1] - ref.samples.shape[-1]) > 0:
        notes.append(f"lengths differ: ref {ref.samples.shape[-1]}, deg {deg_samples.shape[-1]} samples "
                     "(trimmed to the shorter)")
    specs = [METRICS.get(n) for n in metric_names]
    item = Item(id=pair.id, path=pair.ref, domain=pair.domain, transcript=pair.transcript)
    res = score_pair(ref.samples, deg_samples, rate, specs, item=item, align=align,
                     max_lag_s=DEFAULT_MAX_LAG_S if max_lag_s is None else max_lag_s)
    metrics: dict[str, dict[str, Any]] = {}
    for spec in specs:
        entry: dict[str, Any] = {"unit": spec.unit, "higher_is_better": spec.higher_is_better}
        if spec.name in res.skipped:
            entry.update(value=None, status="skipped", reason=res.skipped[spec.name].reason)
        else:
            v = res.values[spec.name]
            ok = v.error is None and math.isfinite(v.value)
            entry.update(value=v.value if ok else None, status="ok" if ok else "failed", reason=v.error)
            extra = {k: val for k, val in v.extra.items() if k != "lag_samples"}
            if extra:
                entry["extra"] = extra
        metrics[spec.name] = entry
    return {"id": pair.id, "ref": pair.ref, "deg": pair.deg, "domain": pair.domain,
            "sample_rate_hz": rate, "duration_s": round(ref.duration_s, 6), "lag_samples": res.lag_samples,
            "notes": notes, "metrics": metrics}


def _jsonable(x: Any) -> Any:
    """Plain JSON data: NaN/Inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _fmt(value: float | None) -> str:
    if value is None:
        return "nan"
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def _print_table(results: list[dict[str, Any]], out=None) -> None:
    out = out or sys.stdout
    for r in results:
        lag = "" if r["lag_samples"] is None else f", lag {r['lag_samples']} samples"
        print(f"{r['id']}: {r['ref']} vs {r['deg']} ({r['domain']}, {r['sample_rate_hz']} Hz, "
              f"{r['duration_s']:.2f} s{lag})", file=out)
        for note in r["notes"]:
            print(f"  note: {note}", file=out)
        width = max(len(n) for n in r["metrics"]) if r["metrics"] else 6
        unit_width = max(len(m["unit"]) for m in r["metrics"].values()) if r["metrics"] else 4
        for name, m in r["metrics"].items():
            arrow = "↑" if m["higher_is_better"] else "↓"
            status = m["status"] if m["status"] == "ok" else f"{m['status']}: {m['reason']}"
            print(f"  {name:<{width}}  {_fmt(m['value']):>10}  {arrow} {m['unit']:<{unit_width}}  {status}", file=out)


def _write_csv(path: str, results: list[dict[str, Any]]) -> None:
    cols = ["id", "ref", "deg", "domain", "sample_rate_hz", "lag_samples", "metric", "value", "status", "reason"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in results:
            for name, m in r["metrics"].items():
                w.writerow({"id": r["id"], "ref": r["ref"], "deg": r["deg"], "domain": r["domain"],
                            "sample_rate_hz": r["sample_rate_hz"], "lag_samples": r["lag_samples"],
                            "metric": name, "value": "" if m["value"] is None else repr(m["value"]),
                            "status": m["status"], "reason": m["reason"] or ""})


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _score_all(pairs: list[PairSpec], names: list[str], args) -> tuple[list[dict], list[str]]:
    from bench.audio import AudioError

    results, errors = [], []
    jobs = [(p, names, args.align, args.max_lag_s) for p in pairs]
    if args.workers > 1 and len(pairs) > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"),
                                    initializer=_init_worker) as pool:
            futures = [pool.submit(score_files, *job) for job in jobs]
            outcomes = []
            for fut in futures:
                try:
                    outcomes.append(fut.result())
                except AudioError as exc:
                    outcomes.append(exc)
    else:
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(score_files(*job))
            except AudioError as exc:
                outcomes.append(exc)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            errors.append(str(outcome))
        else:
            results.append(outcome)
    return results, errors


def main(args) -> int:
    from bench.registry import UnknownNameError

    try:
        names = [m.name for m in _resolve_metrics(args.metrics)]
        if args.pairs:
            if args.ref or args.deg:
                print("error: give either REF DEG or --pairs, not both", file=sys.stderr)
                return 2
            pairs = _read_pairs(args.pairs, args.domain)
        else:
            if not (args.ref and args.deg):
                print("error: give REF and DEG files (or --pairs LIST.csv)", file=sys.stderr)
                return 2
            pairs = [PairSpec(id=Path(args.deg).stem, ref=args.ref, deg=args.deg, domain=args.domain,
                              transcript=args.transcript)]
    except (UnknownNameError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results, errors = _score_all(pairs, names, args)
    if args.json:
        payload: Any = results[0] if (not args.pairs and results) else results
        print(json.dumps(_jsonable(payload), indent=2, allow_nan=False))
    else:
        _print_table(results)
    if args.out:
        _write_csv(args.out, results)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0
