"""``bench score``: score reference/degraded files made outside the harness with the harness's metrics.

    bench score REF DEG [--domain speech|music|general] [--metrics LIST] [--transcript TEXT] [--json]
    bench score --pairs LIST.csv|LIST.jsonl [--json] [--out RESULTS.csv] [--workers N]
    bench score --ref-scp REF.scp --deg-scp DEG.scp [--text-scp TEXT.scp] [--allow-unpaired] ...
    bench score --ref-dir A --deg-dir B [--allow-unpaired] ...

Every form goes through :func:`bench.pipeline.scoring.score_pair`, the pipeline ``bench run`` uses, so the numbers are
the same as the harness would give: channels mixed to mono, a constant delay estimated by
cross-correlation and removed (``--align``), both signals resampled to each metric's native rate with the
one resampler (soxr), trimmed to equal length; a metric that does not apply to the domain is skipped with
the reason, an item a metric cannot score is NaN with the reason.

Sample rates: when REF and DEG differ in rate, DEG is resampled to REF's rate first, so the comparison rate
of rate-agnostic metrics (mel, STFT, LSD, phase, SI-SDR) is the reference's rate.

Lengths: DEG must cover REF. A difference of more than ``--length-tolerance-s`` (default 50 ms) or 1 % of
REF, whichever is larger, fails the pair (every metric NaN, the reason names both lengths); see
:mod:`bench.pipeline.scoring`. Smaller differences are trimmed with a note. Channels are mixed to mono (noted).

Lists (read by :mod:`bench.pairs`, formats in docs/formats.md): a CSV with a header row with columns ``ref``
and ``deg`` and optional ``id``, ``domain``, ``transcript``, or the same keys as JSON Lines; two Kaldi-style
``id path`` scp lists joined by id (``--text-scp`` adds transcripts); two folders paired by relative path
without extension. Relative paths in a list resolve against the list file's folder. Missing ``domain``
falls back to ``--domain``. Ids one side of an scp or folder pair lacks stop the command (exit 2) unless
``--allow-unpaired``, which skips them and says how many on stderr.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from bench.audio import Audio

from bench.cli.args import existing_dir, existing_file, float_range, positive_int, writable_file
from bench.errors import UserError, one_line
from bench.pairs import JSONL_SUFFIXES, PairList, PairSpec
from bench.types import DOMAINS

DOMAIN_CHOICES = DOMAINS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench score``; values are checked here (bad ones: one line, exit 2)."""
    p.add_argument("ref", nargs="?", type=existing_file, help="reference (original) audio file")
    p.add_argument("deg", nargs="?", type=existing_file, help="degraded (decoded) audio file")
    lists = p.add_argument_group(
        "lists of pairs (instead of REF DEG; give one kind; relative paths in a list file are resolved "
        "against the list file's folder)")
    lists.add_argument("--pairs", default=None, metavar="LIST", type=existing_file,
                       help="pairs list: CSV with a header ref,deg[,id,domain,transcript], or JSON Lines "
                            f"({', '.join(JSONL_SUFFIXES)}) with one object per line and those keys")
    lists.add_argument("--ref-scp", default=None, metavar="REF.scp", type=existing_file,
                       help="Kaldi/ESPnet/VERSA 'id path' list of references, joined by id with --deg-scp")
    lists.add_argument("--deg-scp", default=None, metavar="DEG.scp", type=existing_file,
                       help="'id path' list of degraded files (with --ref-scp); pipe and ark: entries are refused")
    lists.add_argument("--ref-dir", default=None, metavar="DIR", type=existing_dir,
                       help="folder of references, paired with --deg-dir by relative path without "
                            "extension (ref a/x.flac with deg a/x.wav; the id is a/x)")
    lists.add_argument("--deg-dir", default=None, metavar="DIR", type=existing_dir,
                       help="folder of degraded files (with --ref-dir)")
    lists.add_argument("--allow-unpaired", action="store_true",
                       help="with --ref-scp/--deg-scp or --ref-dir/--deg-dir: skip ids only one side has "
                            "(counted on stderr) instead of stopping")
    lists.add_argument("--text-scp", default=None, metavar="TEXT.scp", type=existing_file,
                       help="Kaldi 'id transcript' lines giving the pairs of a list their transcripts (WER/CER)")
    p.add_argument("--domain", default="general", choices=DOMAIN_CHOICES,
                   help="content type; PESQ/STOI run on speech only (default: general; a list's "
                        "'domain' column or key overrides it per pair)")
    p.add_argument("--metrics", default=None,
                   help="comma list of metric names, 'all' or 'default' (default: the run's default set)")
    p.add_argument("--transcript", default=None, help="reference transcript for REF DEG (enables WER/CER)")
    p.add_argument("--align", default="xcorr", choices=["xcorr", "report", "none"],
                   help="delay alignment before intrusive metrics (default xcorr: estimate and remove)")
    p.add_argument("--max-lag-s", type=float_range(0.0), default=None, metavar="S",
                   help="largest delay searched, >= 0 (default 0.25 s)")
    p.add_argument("--length-tolerance-s", type=float_range(0.0), default=None, metavar="S",
                   help="largest length difference scored, >= 0; the tolerance is the larger of this and 1%% "
                        "of REF (default 0.05 s); beyond it the pair fails")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (a list for a list of pairs)")
    p.add_argument("--out", default=None, type=writable_file, metavar="RESULTS.csv",
                   help="also write one CSV row per pair and metric to this file")
    p.add_argument("--workers", type=positive_int, default=1, help="processes for a list of pairs (default 1)")


def _resolve_metrics(spec: str | None) -> list:
    from bench.metrics.base import select_metrics as resolve_metrics

    return resolve_metrics(spec)


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

        from bench.workers import init_metric_worker, one_thread_children

        one_thread_children()
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


#: the ways of naming pairs: (label for messages, the options it takes); REF DEG is the first
_SOURCES = (("REF DEG", ("ref", "deg")), ("--pairs", ("pairs",)), ("--ref-scp/--deg-scp", ("ref_scp", "deg_scp")),
            ("--ref-dir/--deg-dir", ("ref_dir", "deg_dir")))


def _source(args: argparse.Namespace) -> str:
    """Which way of naming pairs the arguments use; UserError for none, several, or half of a pair of options."""
    given = [(label, dests) for label, dests in _SOURCES if any(getattr(args, d) for d in dests)]
    if not given:
        raise UserError("give REF and DEG files, or a list: --pairs LIST.csv|LIST.jsonl, "
                        "--ref-scp/--deg-scp or --ref-dir/--deg-dir")
    if len(given) > 1:
        labels = [label for label, _ in given]
        raise UserError(f"give either {' or '.join(labels)}, not both" if len(labels) == 2
                        else f"give one of {', '.join(labels)}, not several")
    label, dests = given[0]
    missing = [d for d in dests if not getattr(args, d)]
    if missing:
        if label == "REF DEG":
            raise UserError("give REF and DEG files (or a list: --pairs, --ref-scp/--deg-scp, --ref-dir/--deg-dir)")
        raise UserError(f"{label}: give both options (--{missing[0].replace('_', '-')} is missing)")
    return label


def _check_list_options(args: argparse.Namespace, source: str) -> None:
    """Options that belong to some ways of naming pairs only; UserError when given with another."""
    if source == "REF DEG":
        if args.text_scp:
            raise UserError("--text-scp applies to lists of pairs; for REF DEG give --transcript TEXT")
    elif args.transcript is not None:
        raise UserError("--transcript applies to REF DEG; with a list give a 'transcript' column or key, "
                        "or --text-scp")
    if args.allow_unpaired and source not in ("--ref-scp/--deg-scp", "--ref-dir/--deg-dir"):
        raise UserError("--allow-unpaired applies to --ref-scp/--deg-scp and --ref-dir/--deg-dir")


def _read_list(args: argparse.Namespace, source: str) -> PairList:
    """The pairs of the list the arguments name (every file checked), with the ids left unpaired."""
    from bench import pairs as pairs_mod

    if source == "--pairs":
        return PairList(pairs_mod.read_pairs_file(args.pairs, args.domain))
    if source == "--ref-scp/--deg-scp":
        return pairs_mod.pairs_from_scp(args.ref_scp, args.deg_scp, args.domain, allow_unpaired=args.allow_unpaired)
    from bench.datasets._common import AUDIO_EXTENSIONS

    return pairs_mod.pairs_from_dirs(args.ref_dir, args.deg_dir, AUDIO_EXTENSIONS, args.domain,
                                     allow_unpaired=args.allow_unpaired)


def _pairs_from_args(args: argparse.Namespace) -> tuple[PairList, list[str]]:
    """The pairs to score and notes for stderr (ids left unpaired, pairs without a transcript).

    UserError for a wrong combination of options or an unusable list, before any scoring.
    """
    source = _source(args)
    _check_list_options(args, source)
    if source == "REF DEG":
        return PairList([PairSpec(id=Path(args.deg).stem, ref=args.ref, deg=args.deg, domain=args.domain,
                                  transcript=args.transcript)]), []
    listed = _read_list(args, source)
    notes = [n for n in [listed.note()] if n]
    if args.text_scp:
        from bench.pairs import add_transcripts, read_text_scp

        without = add_transcripts(listed.pairs, read_text_scp(args.text_scp), args.text_scp)
        if without:
            notes.append(f"{without} of {len(listed.pairs)} pair(s) have no transcript in {args.text_scp} "
                         "(WER/CER cannot score them)")
    return listed, notes


def _metric_names(spec: str | None) -> list[str]:
    """Names of the metrics ``--metrics`` selects; UserError (UnknownNameError) for an unknown name or none."""
    names = [m.name for m in _resolve_metrics(spec)]
    if not names:
        raise UserError(f"--metrics {spec!r} names no metric")
    return names


def main(args: argparse.Namespace) -> int:
    """``bench score``: check every input, score the pairs, print them (and write ``--out``)."""
    names = _metric_names(args.metrics)
    listed, notes = _pairs_from_args(args)
    results, errors = _score_all(listed.pairs, names, args)
    if args.json:
        payload: Any = results[0] if (args.ref and results) else results
        print(json.dumps(_jsonable(payload), indent=2, allow_nan=False))
    else:
        _print_table(results)
    if args.out:
        _write_csv(args.out, results)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for e in errors:
        print(f"error: {one_line(e)}", file=sys.stderr)
    return 1 if errors else 0
