"""``bench score``: score reference/degraded files made outside the harness with the harness's metrics.

    bench score REF DEG [--domain speech|music|general] [--metrics LIST] [--transcript TEXT] [--json]
    bench score --pairs LIST.csv [--json] [--out RESULTS.csv] [--workers N]

Both forms go through :func:`bench.pipeline.scoring.score_pair`, the pipeline ``bench run`` uses, so the numbers are
the same as the harness would give: channels mixed to mono, a constant delay estimated by
cross-correlation and removed (``--align``), both signals resampled to each metric's native rate with the
one resampler (soxr), trimmed to equal length; a metric that does not apply to the domain is skipped with
the reason, an item a metric cannot score is NaN with the reason.

Sample rates: when REF and DEG differ in rate, DEG is resampled to REF's rate first, so the comparison rate
of rate-agnostic metrics (mel, STFT, LSD, phase, SI-SDR) is the reference's rate.

Lengths: DEG must cover REF. A difference of more than ``--length-tolerance-s`` (default 50 ms) or 1 % of
REF, whichever is larger, fails the pair (every metric NaN, the reason names both lengths); see
:mod:`bench.pipeline.scoring`. Smaller differences are trimmed with a note. Channels are mixed to mono (noted).

Pairs CSV: a header row with columns ``ref`` and ``deg`` (paths, relative ones resolved against the CSV's
folder) and optional ``id``, ``domain``, ``transcript``. Missing ``domain`` falls back to ``--domain``.

Exit status: 0 when every pair was read (metric failures are results, not errors), 1 when a file exists
but could not be decoded (the message names it), 2 for bad arguments: a bad option value, a missing
REF/DEG file, a malformed pairs list or one naming a missing file, an unwritable ``--out``. These are
checked before any scoring.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from bench.audio import Audio

from bench.cli.args import existing_file, float_range, positive_int, writable_file
from bench.errors import UserError, one_line
from bench.types import DOMAINS

DOMAIN_CHOICES = DOMAINS


@dataclass
class PairSpec:
    """One pair to score: an id, the reference and degraded files, the domain, an optional transcript."""

    id: str
    ref: str
    deg: str
    domain: str
    transcript: str | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench score``; values are checked here (bad ones: one line, exit 2)."""
    p.add_argument("ref", nargs="?", type=existing_file, help="reference (original) audio file")
    p.add_argument("deg", nargs="?", type=existing_file, help="degraded (decoded) audio file")
    p.add_argument("--pairs", default=None, metavar="LIST.csv", type=existing_file,
                   help="CSV with columns ref,deg[,id,domain,transcript] instead of REF DEG")
    p.add_argument("--domain", default="general", choices=DOMAIN_CHOICES,
                   help="content type; PESQ/STOI run on speech only (default: general)")
    p.add_argument("--metrics", default=None,
                   help="comma list of metric names, 'all' or 'default' (default: the run's default set)")
    p.add_argument("--transcript", default=None, help="reference transcript (enables WER/CER)")
    p.add_argument("--align", default="xcorr", choices=["xcorr", "report", "none"],
                   help="delay alignment before intrusive metrics (default xcorr: estimate and remove)")
    p.add_argument("--max-lag-s", type=float_range(0.0), default=None, metavar="S",
                   help="largest delay searched, >= 0 (default 0.25 s)")
    p.add_argument("--length-tolerance-s", type=float_range(0.0), default=None, metavar="S",
                   help="largest length difference scored, >= 0; the tolerance is the larger of this and 1%% "
                        "of REF (default 0.05 s); beyond it the pair fails")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", default=None, type=writable_file, metavar="RESULTS.csv",
                   help="also write one CSV row per pair and metric to this file")
    p.add_argument("--workers", type=positive_int, default=1, help="processes for --pairs (default 1)")


def _resolve_metrics(spec: str | None) -> list:
    from bench.metrics.base import select_metrics as resolve_metrics

    return resolve_metrics(spec)


def _cell(path: str, line_no: int, value: Any) -> str:
    """One CSV cell as stripped text; a row longer than the header is a user error."""
    if isinstance(value, list):  # csv.DictReader puts surplus fields in a list under the key None
        raise UserError(f"{path}:{line_no}: {len(value)} more field(s) than the header has columns")
    return (value or "").strip()


def _pair_file(path: str, line_no: int, column: str, text: str, base: Path) -> str:
    """The absolute path a pairs-CSV cell names (relative to the CSV's folder); it must be a readable file."""
    resolved = str(Path(text) if Path(text).is_absolute() else base / text)
    try:
        return existing_file(resolved)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"{path}:{line_no}: {column}: {exc}") from None


def _pair_row(path: str, line_no: int, raw: dict, base: Path, default_domain: str) -> PairSpec:
    """One data row of a pairs CSV as a PairSpec; UserError naming the line when it is not usable."""
    row = {(k or "").strip().lower(): _cell(path, line_no, v) for k, v in raw.items()}
    if not row.get("ref") or not row.get("deg"):
        raise UserError(f"{path}:{line_no}: empty ref or deg")
    domain = row.get("domain") or default_domain
    if domain not in DOMAIN_CHOICES:
        raise UserError(f"{path}:{line_no}: unknown domain {domain!r}; choose from {DOMAIN_CHOICES}")
    ref, deg = (_pair_file(path, line_no, col, row[col], base) for col in ("ref", "deg"))
    return PairSpec(id=row.get("id") or Path(row["deg"]).stem, ref=ref, deg=deg, domain=domain,
                    transcript=row.get("transcript") or None)


def _parse_pairs(path: str, f: TextIO, default_domain: str) -> list[PairSpec]:
    """Rows of an open pairs CSV (header checked) as PairSpecs."""
    reader = csv.DictReader(f)
    fields = {(c or "").strip().lower() for c in (reader.fieldnames or [])}
    if not {"ref", "deg"} <= fields:
        raise UserError(f"{path}: needs a header with columns 'ref' and 'deg' (got {sorted(fields)})")
    base = Path(path).resolve().parent
    return [_pair_row(path, reader.line_num, raw, base, default_domain) for raw in reader]


def _read_pairs(path: str, default_domain: str) -> list[PairSpec]:
    """The pairs a CSV lists, every file checked; UserError (one line naming the problem) otherwise."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            pairs = _parse_pairs(path, f, default_domain)
    except FileNotFoundError:
        raise UserError(f"{path}: pairs file not found") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); expected a CSV file") from None
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not pairs:
        raise UserError(f"{path}: no pairs")
    seen: dict[str, int] = {}
    for pair in pairs:  # ids must be unique in the output; derived ones can collide
        seen[pair.id] = seen.get(pair.id, 0) + 1
        if seen[pair.id] > 1:
            pair.id = f"{pair.id}#{seen[pair.id]}"
    return pairs


def _load(path: str) -> Audio:
    from bench.audio import load_audio

    return load_audio(path)


def score_files(pair: PairSpec, metric_names: list[str], align: str = "xcorr",
                max_lag_s: float | None = None, length_tolerance_s: float | None = None) -> dict[str, Any]:
    """Score one file pair; returns plain data (JSON-ready except NaN)."""
    from bench.audio import resample
    from bench.datasets.base import Item
    from bench.pipeline.scoring import DEFAULT_MAX_LAG_S, LENGTH_TOLERANCE_S, score_pair
    from bench.registry import METRICS

    ref, deg = _load(pair.ref), _load(pair.deg)
    rate = ref.sample_rate_hz
    notes = []
    deg_samples = deg.samples
    if deg.sample_rate_hz != rate:
        deg_samples = resample(deg_samples, deg.sample_rate_hz, rate)
        notes.append(f"degraded resampled {deg.sample_rate_hz} -> {rate} Hz")
    specs = [METRICS.get(n) for n in metric_names]
    item = Item(id=pair.id, path=pair.ref, domain=pair.domain, transcript=pair.transcript)
    res = score_pair(ref.samples, deg_samples, rate, specs, item=item, align=align,
                     max_lag_s=DEFAULT_MAX_LAG_S if max_lag_s is None else max_lag_s,
                     length_tolerance_s=LENGTH_TOLERANCE_S if length_tolerance_s is None else length_tolerance_s)
    notes += res.notes
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


def _print_table(results: list[dict[str, Any]], out: TextIO | None = None) -> None:
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
    """One row per pair and metric (the folder is created); UserError when the file cannot be written."""
    cols = ["id", "ref", "deg", "domain", "sample_rate_hz", "lag_samples", "metric", "value", "status", "reason"]
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in results:
                for name, m in r["metrics"].items():
                    w.writerow({"id": r["id"], "ref": r["ref"], "deg": r["deg"], "domain": r["domain"],
                                "sample_rate_hz": r["sample_rate_hz"], "lag_samples": r["lag_samples"],
                                "metric": name, "value": "" if m["value"] is None else repr(m["value"]),
                                "status": m["status"], "reason": m["reason"] or ""})
    except OSError as exc:
        raise UserError(f"--out {path}: cannot write ({exc.strerror or exc})") from None


def _score_all(pairs: list[PairSpec], names: list[str],
               args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """Score every pair (in a process pool for ``--workers`` > 1); (results, unreadable-file errors)."""
    from bench.audio import AudioError

    jobs = [(p, names, args.align, args.max_lag_s, args.length_tolerance_s) for p in pairs]
    workers = min(args.workers, len(pairs))
    outcomes: list[dict[str, Any] | AudioError] = []
    if workers > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        from bench.workers import init_metric_worker

        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                    initializer=init_metric_worker, initargs=(os.getpid(),)) as pool:
            for fut in [pool.submit(score_files, *job) for job in jobs]:
                try:
                    outcomes.append(fut.result())
                except AudioError as exc:
                    outcomes.append(exc)
    else:
        for job in jobs:
            try:
                outcomes.append(score_files(*job))
            except AudioError as exc:
                outcomes.append(exc)
    results = [o for o in outcomes if not isinstance(o, Exception)]
    errors = [str(o) for o in outcomes if isinstance(o, Exception)]
    return results, errors


def _pairs_from_args(args: argparse.Namespace) -> list[PairSpec]:
    """The pairs to score: REF DEG or the ``--pairs`` list (UserError for a wrong combination)."""
    if args.pairs:
        if args.ref or args.deg:
            raise UserError("give either REF DEG or --pairs, not both")
        if args.transcript is not None:
            raise UserError("--transcript applies to REF DEG; with --pairs give a 'transcript' column")
        return _read_pairs(args.pairs, args.domain)
    if not (args.ref and args.deg):
        raise UserError("give REF and DEG files (or --pairs LIST.csv)")
    return [PairSpec(id=Path(args.deg).stem, ref=args.ref, deg=args.deg, domain=args.domain,
                     transcript=args.transcript)]


def _metric_names(spec: str | None) -> list[str]:
    """Names of the metrics ``--metrics`` selects; UserError (UnknownNameError) for an unknown name or none."""
    names = [m.name for m in _resolve_metrics(spec)]
    if not names:
        raise UserError(f"--metrics {spec!r} names no metric")
    return names


def main(args: argparse.Namespace) -> int:
    """``bench score``: check every input, score the pairs, print them (and write ``--out``)."""
    names = _metric_names(args.metrics)
    pairs = _pairs_from_args(args)
    results, errors = _score_all(pairs, names, args)
    if args.json:
        payload: Any = results[0] if (not args.pairs and results) else results
        print(json.dumps(_jsonable(payload), indent=2, allow_nan=False))
    else:
        _print_table(results)
    if args.out:
        _write_csv(args.out, results)
    for e in errors:
        print(f"error: {one_line(e)}", file=sys.stderr)
    return 1 if errors else 0
