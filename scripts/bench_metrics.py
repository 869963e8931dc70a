#!/usr/bin/env python
"""Metric speed benchmark: seconds of compute per second of audio for every registered metric.

For each metric (ViSQOL twice: speech mode at 16 kHz with the lattice mapper and audio mode at 48 kHz,
each with and without numba) it measures

* **single**: one process, one clip per call; one warm-up call, then the median of ``--repeats`` calls,
  divided by the clip's duration (s of compute per s of audio; lower is faster);
* **pooled**: a ``ProcessPoolExecutor`` with ``--workers`` processes (spawned, warmed up with one call
  each), scoring ``2 x workers`` clips; wall time divided by the total audio duration (so an ideal pool of
  2 halves the single-process figure). Pool start-up is not counted.

Clips: real audio from ``../shared/audio`` and ``../shared/metrics-ref`` when present (LibriVox utterances
with transcripts, concatenated to at least ``--duration-s``, for speech metrics; the ViSQOL guitar
conformance file, mono, for music), else synthetic signals (WER/CER are then skipped). The degraded signal
is the reference plus white noise at 15 dB SNR with a new seed for every call, so the per-clip caches of
WER and DNSMOS never serve a timed call. Metrics with no native rate run on the music clip at 48 kHz.

Threads: BLAS/OMP/numba/onnxruntime threads default to 1 per process (``--threads``), as in EXPECTED.md
section 7, so the pooled column shows what the process pool adds. Figures depend on the machine and its
load; run on an idle machine for numbers to quote.

Usage: python scripts/bench_metrics.py [--metrics visqol,pesq_wb] [--duration-s 10] [--repeats 3]
       [--workers 2] [--no-pool] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
LIBRIVOX = SHARED / "audio" / "fixtures" / "speech-librivox-with-transcripts"
GUITAR = SHARED / "metrics-ref" / "visqol" / "testdata" / "conformance_testdata_subset" / "guitar48_stereo.flac"
SNR_DB = 15.0
MUSIC_RATE_HZ = 48000


def _set_threads(threads: int) -> None:
    """Must run before numpy/torch/numba/onnxruntime start their thread pools."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                "BENCH_ORT_THREADS"):
        os.environ[var] = str(threads)


# ------------------------------------------------------------------ clips

def load_clips(duration_s: float):
    """{'speech': (wav, rate, transcript), 'music': (wav, rate, None)} as float32 mono numpy arrays."""
    import numpy as np

    clips = {}
    if LIBRIVOX.is_dir():
        from bench.audio import load_audio, to_channels

        parts, words, total = [], [], 0.0
        for wav in sorted(LIBRIVOX.glob("*.wav")):
            a = load_audio(wav)
            parts.append(to_channels(a.samples, 1)[0])
            words.append(wav.with_suffix(".txt").read_text().strip())
            total += a.duration_s
            if total >= duration_s:
                break
        clips["speech"] = (np.concatenate(parts), 16000, " ".join(words))
    else:  # synthetic voiced-like signal: harmonics of a wandering f0, amplitude-modulated
        t = np.arange(int(duration_s * 16000)) / 16000
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
        clips["speech"] = ((0.1 * x).astype(np.float32), 16000, None)
    if GUITAR.is_file():
        from bench.audio import load_audio, to_channels

        a = load_audio(GUITAR, duration_s=duration_s)
        clips["music"] = (to_channels(a.samples, 1)[0], a.sample_rate_hz, None)
    else:
        rng = np.random.default_rng(1)
        t = np.arange(int(duration_s * MUSIC_RATE_HZ)) / MUSIC_RATE_HZ
        x = sum(np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 0.5)) for f in (220, 277, 330, 440))
        clips["music"] = ((0.1 * x + 0.003 * rng.standard_normal(t.size)).astype(np.float32), MUSIC_RATE_HZ, None)
    return clips


def degrade(x, seed: int):
    import numpy as np

    noise = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-SNR_DB / 20)
    return (x + noise).astype(np.float32)


# ------------------------------------------------------------------ one measurement

_STATE: dict = {}


def _prepare(metric: str, domain: str, clip, options: dict, numba: bool | None):
    """Set up (in this process) what `_score` needs; the clip is resampled to the metric's rate."""
    import torch

    from bench.audio import resample
    from bench.datasets.base import Item
    from bench.metrics.base import get_metric

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if numba is not None:
        from bench.metrics.visqol import set_numba

        os.environ["BENCH_VISQOL_NUMBA"] = "1" if numba else "0"
        set_numba(numba)
    spec = get_metric(metric)
    wav, rate, transcript = clip
    target_rate = spec.sample_rate_hz or rate
    ref = resample(wav, rate, target_rate)
    item = Item(id=f"bench-{domain}", path="-", domain=domain, transcript=transcript)
    _STATE.update(spec=spec, ref=ref, rate=target_rate, item=item, options=options)


def _score(seed: int) -> tuple[float, float, str | None]:
    """(seconds, value, error) of one call on a freshly degraded copy of the clip."""
    import torch

    from bench.metrics.base import compute

    s = _STATE
    deg = torch.from_numpy(degrade(s["ref"], seed))[None]
    ref = torch.from_numpy(s["ref"])[None]
    t0 = time.perf_counter()
    (v,) = compute(s["spec"], deg, ref, items=[s["item"]], sample_rate_hz=s["rate"], **s["options"])
    return time.perf_counter() - t0, v.value, v.error


def _worker_init(metric, domain, clip, options, numba, threads):
    _set_threads(threads)
    _prepare(metric, domain, clip, options, numba)


def measure(row: dict, clip, args, row_index: int) -> dict:
    duration_s = len(clip[0]) / clip[1]
    _prepare(row["metric"], row["domain"], clip, row["options"], row["numba"])
    rate = _STATE["rate"]
    # seeds unique per row, so a metric never finds a clip already scored by a sibling (wer/cer and the
    # three DNSMOS metrics share per-clip caches; in a real run that sharing is a genuine saving)
    base = 1000 * (row_index + 1)
    _, value, error = _score(base)  # warm-up: model loading, JIT compilation
    times = [_score(base + k) for k in range(1, args.repeats + 1)]
    if any(t[2] is not None for t in times):
        error = error or next(t[2] for t in times if t[2] is not None)
    times = [t[0] for t in times]
    out = dict(row, rate_hz=rate, audio_s=duration_s, single=statistics.median(times) / duration_s,
               value=value, error=error, pooled=None)
    if args.workers > 1 and not args.no_pool:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(row["metric"], row["domain"], clip, row["options"], row["numba"],
                                           args.threads)) as pool:
            list(pool.map(_score, range(100, 100 + args.workers)))  # warm every worker
            n_jobs = 2 * args.workers
            t0 = time.perf_counter()
            list(pool.map(_score, range(200, 200 + n_jobs)))
            out["pooled"] = (time.perf_counter() - t0) / (n_jobs * duration_s)
    return out


# ------------------------------------------------------------------ rows and table

def plan_rows(names: list[str], have_transcript: bool) -> list[dict]:
    from bench.metrics.base import get_metric

    rows = []
    for name in names:
        spec = get_metric(name)
        if name == "visqol":
            for domain, variant in (("speech", "speech 16k lattice"), ("music", "audio 48k SVR")):
                for numba in (True, False):
                    rows.append(dict(metric=name, variant=f"{variant}, {'numba' if numba else 'no numba'}",
                                     domain=domain, options={}, numba=numba))
            continue
        if spec.needs_transcript and not have_transcript:
            print(f"skipping {name}: no transcribed speech clip (../shared/audio missing)", file=sys.stderr)
            continue
        domain = "speech" if spec.domains == ("speech",) else "music"
        rows.append(dict(metric=name, variant="", domain=domain, options={}, numba=None))
    return rows


def print_table(results: list[dict], args) -> None:
    head = f"{'metric':<15}{'variant':<32}{'content':<8}{'rate_hz':>8}{'clip_s':>8}" \
           f"{'single s/s':>12}{'pooled s/s':>12}{'speed-up':>10}  value"
    print(head)
    print("-" * len(head))
    for r in results:
        pooled = "-" if r["pooled"] is None else f"{r['pooled']:.5f}"
        speedup = "-" if r["pooled"] is None else f"{r['single'] / r['pooled']:.2f}x"
        value = f"{r['value']:.4f}" if r["error"] is None else f"NaN ({r['error'][:40]})"
        print(f"{r['metric']:<15}{r['variant']:<32}{r['domain']:<8}{r['rate_hz']:>8}{r['audio_s']:>8.2f}"
              f"{r['single']:>12.5f}{pooled:>12}{speedup:>10}  {value}")
    print(f"\nsingle: median of {args.repeats} calls after a warm-up, one process; pooled: "
          f"{args.workers} spawned workers, {2 * args.workers} clips, wall / audio seconds. "
          f"Threads per process: {args.threads}. Degraded = reference + white noise at {SNR_DB:g} dB SNR. "
          f"CPUs: {os.cpu_count()}, load average at end: {os.getloadavg()[0]:.2f}.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", default="all", help="comma-separated metric names (default: all registered)")
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-pool", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OMP/numba/ORT threads per process")
    args = ap.parse_args()
    _set_threads(args.threads)

    from bench.registry import METRICS

    names = METRICS.names() if args.metrics == "all" else [m.strip() for m in args.metrics.split(",") if m.strip()]
    clips = load_clips(args.duration_s)
    rows = plan_rows(names, have_transcript=clips["speech"][2] is not None)
    from bench.metrics.visqol import numba_available

    print(f"visqol-python numba available: {numba_available()}", flush=True)
    results = []
    for row in rows:
        t0 = time.perf_counter()
        results.append(measure(row, clips[row["domain"]], args, len(results)))
        print(f"  {row['metric']} {row['variant']}: single {results[-1]['single']:.5f} s/s "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print()
    print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
