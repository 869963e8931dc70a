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

Pitch metrics (``f0_rmse``, ``vuv_error``) get one row per domain: pYIN's search range, hence its cost,
differs between speech (50-600 Hz) and music (C1-C7). ``spk_sim`` and the pitch metrics cache the
reference's embedding / track per process, so after the warm-up a timed call pays for the reconstruction
only (what every codec after the first pays in a run).

Model-backed metrics read their weights from ``BENCH_*_MODEL`` (:mod:`bench.metrics._models`). With
``--random-models DIR`` the script builds (once; reused afterwards) random-init models of the published
sizes (``scripts/random_models.py``: WavLM-base-plus-SV, Whisper small, HuBERT-Large CTC, EnCodec 24 kHz,
CLAP) and points those variables at them: the values are then meaningless, the compute representative.
Random Whisper weights never emit ``<|endoftext|>``, so ``generate`` runs to its cap of 224 new tokens a
window (the decoder steps of the warm-up call are counted and shown); a second Whisper row caps it at
``--whisper-tokens-per-s`` x the clip's duration (default 4/s: about 40 tokens for 10 s of read speech),
through a recogniser identical to the metric's except for ``max_new_tokens`` (``wer_strong.error_rate``
with a ``WhisperBackend(max_new_tokens=N)``): the metric itself has no option for it.

Set-level metrics (FAD: ``fad_encodec``, ``fad_clap``) have no per-pair cost; when named, a separate
table gives their embedders' cost: one ``embed`` of the music clip (at the embedder's rate, noise added
per call), warm-up then median of ``--repeats``, in s of compute per s of audio, with the load time.
A FAD value embeds every reference once and every reconstruction of each codec point once; the distance
itself (eigendecompositions, bootstrap) is not timed here.

Usage: python scripts/bench_metrics.py [--metrics visqol,pesq_wb] [--duration-s 10] [--repeats 3]
       [--workers 2] [--no-pool] [--threads 1] [--random-models DIR] [--whisper-tokens-per-s 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
LIBRIVOX = SHARED / "audio" / "fixtures" / "speech-librivox-with-transcripts"
GUITAR = SHARED / "metrics-ref" / "visqol" / "testdata" / "conformance_testdata_subset" / "guitar48_stereo.flac"
SNR_DB = 15.0
MUSIC_RATE_HZ = 48000
PER_DOMAIN = ("f0_rmse", "vuv_error")  # metrics whose settings (and cost) depend on the item's domain
#: metrics that cache the reference's embedding / pitch track per process: after the warm-up a timed call
#: pays for the reconstruction only, as every codec after the first does in a run
REF_CACHED = ("spk_sim", "f0_rmse", "vuv_error")
WHISPER_WINDOW_S = 30.0


def _set_threads(threads: int) -> None:
    """Must run before numpy/torch/numba/onnxruntime start their thread pools."""
    from bench.workers import THREAD_VARS  # the same variables the runner's metric workers pin

    for var in (*THREAD_VARS, "BENCH_ORT_THREADS"):
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


# ------------------------------------------------------------------ random-init models

def use_random_models(root: str) -> dict:
    """Build (or reuse) the random-init models under ``root`` and point the ``BENCH_*_MODEL`` variables at them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from random_models import random_model_dirs, read_marker

    dirs = random_model_dirs(root, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    for env, folder in dirs.items():
        os.environ[env] = str(folder)
        info = read_marker(folder) or {}
        print(f"{env}={folder}  (random init, shape of {info.get('stands_for')}, "
              f"{info.get('n_params', 0) / 1e6:.1f} M parameters)")
    print("Weights are RANDOM: the values below are meaningless (WER of gibberish, similarity of noise "
          "embeddings); layers, widths and sequence lengths are the published models', so the compute is "
          "representative.\n", flush=True)
    return dirs


def random_backed(spec, dirs: dict) -> bool:
    """Whether ``spec`` reads its weights from one of the random-init folders."""
    if not dirs or spec.model_info is None:
        return False
    try:
        return spec.model_info().get("env") in dirs
    except Exception:  # a model_info that fails is not ours to diagnose here
        return False


def _capped_backend(max_new_tokens: int, folder: str, device: str):
    """The Whisper backend of ``wer_whisper`` with another ``max_new_tokens``."""
    from bench.metrics.asr import WhisperBackend
    from bench.metrics.wer_strong import WHISPER_LANGUAGE, WHISPER_NUM_BEAMS

    return WhisperBackend(folder, language=WHISPER_LANGUAGE, device=device, num_beams=WHISPER_NUM_BEAMS,
                          max_new_tokens=max_new_tokens)


def capped_whisper(max_new_tokens: int):
    """``wer_strong.WHISPER`` with generate capped at ``max_new_tokens`` a window (its own backend and cache)."""
    from bench.metrics import wer_strong

    return dataclasses.replace(wer_strong.WHISPER, kind=f"whisper-max{max_new_tokens}",
                               build=functools.partial(_capped_backend, max_new_tokens),
                               settings={**wer_strong.WHISPER.settings, "max_new_tokens": max_new_tokens})


@contextmanager
def count_forward_calls(class_name: str):
    """Count forward calls of modules of class ``class_name`` inside the block (a global hook: warm-up only)."""
    import torch

    counter = {"n": 0}

    def hook(module, args, output):
        if type(module).__name__ == class_name:
            counter["n"] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


# ------------------------------------------------------------------ one measurement

_STATE: dict = {}


def _prepare(row: dict, clip) -> None:
    """Set up (in this process) what `_score` needs; the clip is resampled to the metric's rate."""
    import torch

    from bench.audio import resample
    from bench.datasets.base import Item
    from bench.metrics.base import get_metric

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if row["numba"] is not None:
        from bench.metrics.visqol import set_numba

        os.environ["BENCH_VISQOL_NUMBA"] = "1" if row["numba"] else "0"
        set_numba(row["numba"])
    spec = get_metric(row["metric"])
    wav, rate, transcript = clip
    target_rate = spec.sample_rate_hz or rate
    ref = resample(wav, rate, target_rate)
    item = Item(id=f"bench-{row['domain']}", path="-", domain=row["domain"], transcript=transcript)
    recogniser = capped_whisper(row["max_new_tokens"]) if row.get("max_new_tokens") else None
    _STATE.update(spec=spec, ref=ref, rate=target_rate, item=item, options=row["options"], recogniser=recogniser)


def _call(s: dict, deg, ref):
    """One value of the row's metric (or of the capped Whisper recogniser) on one degraded clip."""
    from bench.metrics.base import compute

    if s["recogniser"] is None:
        (v,) = compute(s["spec"], deg, ref, items=[s["item"]], sample_rate_hz=s["rate"], **s["options"])
        return v
    from bench.metrics.wer_strong import error_rate

    unit = "char" if s["spec"].name.startswith("cer") else "word"
    (v,) = error_rate(s["recogniser"], deg, unit=unit, sample_rate_hz=s["rate"], items=[s["item"]],
                      transcripts=None, device=None)
    return v


def _score(seed: int) -> tuple[float, float, str | None, str]:
    """(seconds, value, error, note) of one call on a freshly degraded copy of the clip."""
    import torch

    s = _STATE
    deg = torch.from_numpy(degrade(s["ref"], seed))[None]
    ref = torch.from_numpy(s["ref"])[None]
    t0 = time.perf_counter()
    v = _call(s, deg, ref)
    seconds = time.perf_counter() - t0
    hyp = (v.extra or {}).get("hypothesis")
    return seconds, v.value, v.error, "" if hyp is None else f"hyp {len(hyp.split())} words"


def _worker_init(row, clip, threads):
    _set_threads(threads)
    _prepare(row, clip)


def _warm_up(row: dict, seed: int) -> tuple[tuple, float, str]:
    """The first call (model loading, JIT compilation): its result, seconds, and Whisper's decoder steps."""
    t0 = time.perf_counter()
    if not row["metric"].endswith("_whisper"):
        return _score(seed), time.perf_counter() - t0, ""
    with count_forward_calls("WhisperForConditionalGeneration") as steps:
        first = _score(seed)
    return first, time.perf_counter() - t0, f"{steps['n']} decoder steps"


def _pooled(row: dict, clip, args, duration_s: float) -> float:
    """Wall seconds per audio second of ``2 x workers`` clips through a warmed-up spawned process pool."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(row, clip, args.threads)) as pool:
        list(pool.map(_score, range(100, 100 + args.workers)))  # warm every worker
        n_jobs = 2 * args.workers
        t0 = time.perf_counter()
        list(pool.map(_score, range(200, 200 + n_jobs)))
        return (time.perf_counter() - t0) / (n_jobs * duration_s)


def measure(row: dict, clip, args, row_index: int) -> dict:
    """Single-process (and, unless --no-pool, pooled) s of compute per s of audio of one row."""
    duration_s = len(clip[0]) / clip[1]
    _prepare(row, clip)
    rate = _STATE["rate"]
    # seeds unique per row, so a metric never finds a clip already scored by a sibling (wer/cer and the
    # three DNSMOS metrics share per-clip caches; in a real run that sharing is a genuine saving)
    base = 1000 * (row_index + 1)
    (_, value, error, note), first_s, steps = _warm_up(row, base)
    runs = [_score(base + k) for k in range(1, args.repeats + 1)]
    error = error or next((r[2] for r in runs if r[2] is not None), None)
    note = ", ".join(n for n in (steps, note) if n)
    out = dict(row, rate_hz=rate, audio_s=duration_s, single=statistics.median(r[0] for r in runs) / duration_s,
               value=value, error=error, pooled=None, first_s=first_s, note=note)
    if args.workers > 1 and not args.no_pool:
        out["pooled"] = _pooled(row, clip, args, duration_s)
    return out


# ------------------------------------------------------------------ set-level embedders (FAD)

def measure_embedder(name: str, clip, args) -> dict:
    """Load time and s of compute per s of audio of one FAD embedder on the (music) clip."""
    from bench.audio import resample
    from bench.metrics import fad

    embedder = fad.EMBEDDERS[name.removeprefix("fad_")]
    out = dict(metric=name, embedder=embedder.display_name, error=None)
    t0 = time.perf_counter()
    try:
        model = fad.load_embedder(embedder)
    except Exception as exc:  # missing weights: one line in the table, not a traceback
        return dict(out, error=f"{type(exc).__name__}: {exc}")
    out["load_s"] = time.perf_counter() - t0
    wav, rate, _ = clip
    x = resample(wav, rate, model.sample_rate_hz)
    duration_s = len(x) / model.sample_rate_hz
    t0 = time.perf_counter()
    frames = model.embed(degrade(x, 1))
    out["first_s"] = time.perf_counter() - t0
    times = []
    for k in range(args.repeats):
        y = degrade(x, 2 + k)
        t0 = time.perf_counter()
        model.embed(y)
        times.append(time.perf_counter() - t0)
    return dict(out, rate_hz=model.sample_rate_hz, audio_s=duration_s, shape=f"{frames.shape[0]} x {frames.shape[1]}",
                single=statistics.median(times) / duration_s)


def print_embedder_table(results: list[dict], args) -> None:
    """The FAD embedders' table: per-clip embedding cost (a FAD value is set-level, no per-pair timing)."""
    head = f"{'metric':<13}{'embedder':<36}{'rate_hz':>8}{'clip_s':>8}{'frames x dim':>14}{'load s':>8}" \
           f"{'first s':>9}{'embed s/s':>11}"
    print(head)
    print("-" * len(head))
    for r in results:
        if r["error"] is not None:
            print(f"{r['metric']:<13}{r['embedder']:<36}  not measured: {r['error'][:160]}")
            continue
        print(f"{r['metric']:<13}{r['embedder']:<36}{r['rate_hz']:>8}{r['audio_s']:>8.2f}{r['shape']:>14}"
              f"{r['load_s']:>8.1f}{r['first_s']:>9.2f}{r['single']:>11.5f}")
    print(f"\nembed s/s: median of {args.repeats} embeddings of the music clip after a warm-up (first s), one "
          f"process, {args.threads} thread(s); load s: reading the weights. A FAD value costs one embedding of "
          f"every reference and of every reconstruction (x this figure x the set's audio seconds) plus the "
          f"distance (not timed). CPUs: {os.cpu_count()}, load average at end: {os.getloadavg()[0]:.2f}.")


# ------------------------------------------------------------------ rows and table

def _row(name: str, domain: str, variant: str = "", max_new_tokens: int | None = None) -> dict:
    return dict(metric=name, variant=variant, domain=domain, options={}, numba=None, max_new_tokens=max_new_tokens)


def _model_rows(name: str, domain: str, args, duration_s: float) -> list[dict]:
    """Rows of a metric on random-init weights: Whisper at its default cap and at a realistic one."""
    if not name.endswith("_whisper"):
        return [_row(name, domain, "random-init weights")]
    from bench.metrics.asr import WHISPER_MAX_NEW_TOKENS

    rows = [_row(name, domain, f"random init, <={WHISPER_MAX_NEW_TOKENS} tok (default)")]
    if args.whisper_tokens_per_s > 0:
        cap = max(1, round(args.whisper_tokens_per_s * min(duration_s, WHISPER_WINDOW_S)))
        rows.append(_row(name, domain, f"random init, <={cap} tok (capped)", max_new_tokens=cap))
    return rows


def plan_rows(names: list[str], have_transcript: bool, args=None, duration_s: float = 10.0,
              random_dirs: dict | None = None) -> tuple[list[dict], list[str]]:
    """(per-pair rows to time, set-level metric names for the embedder table)."""
    from bench.metrics.base import get_metric

    rows, set_level = [], []
    for name in names:
        spec = get_metric(name)
        if spec.set_level:
            set_level.append(name)
            continue
        if name == "visqol":
            for domain, variant in (("speech", "speech 16k lattice"), ("music", "audio 48k SVR")):
                for numba in (True, False):
                    rows.append(dict(_row(name, domain, f"{variant}, {'numba' if numba else 'no numba'}"),
                                     numba=numba))
            continue
        if spec.needs_transcript and not have_transcript:
            print(f"skipping {name}: no transcribed speech clip (../shared/audio missing)", file=sys.stderr)
            continue
        domains = [d for d in ("speech", "music") if d in spec.domains] if name in PER_DOMAIN else \
            ["speech" if spec.domains == ("speech",) else "music"]
        for domain in domains:
            if random_backed(spec, random_dirs or {}):
                rows += _model_rows(name, domain, args, duration_s)
            else:
                rows.append(_row(name, domain, f"{domain} pitch range" if name in PER_DOMAIN else ""))
    return rows, set_level


def _value_text(r: dict) -> str:
    value = f"{r['value']:.4f}" if r["error"] is None else f"NaN ({r['error'][:40]})"
    return f"{value}  [{r['note']}]" if r.get("note") else value


def print_table(results: list[dict], args) -> None:
    """The per-pair table: single-process and pooled s of compute per s of audio."""
    head = f"{'metric':<15}{'variant':<36}{'content':<8}{'rate_hz':>8}{'clip_s':>8}" \
           f"{'single s/s':>12}{'pooled s/s':>12}{'speed-up':>10}  value"
    print(head)
    print("-" * len(head))
    for r in results:
        pooled = "-" if r["pooled"] is None else f"{r['pooled']:.5f}"
        speedup = "-" if r["pooled"] is None else f"{r['single'] / r['pooled']:.2f}x"
        print(f"{r['metric']:<15}{r['variant']:<36}{r['domain']:<8}{r['rate_hz']:>8}{r['audio_s']:>8.2f}"
              f"{r['single']:>12.5f}{pooled:>12}{speedup:>10}  {_value_text(r)}")
    print(f"\nsingle: median of {args.repeats} calls after a warm-up, one process; pooled: "
          f"{args.workers} spawned workers, {2 * args.workers} clips, wall / audio seconds. "
          f"Threads per process: {args.threads}. Degraded = reference + white noise at {SNR_DB:g} dB SNR. "
          f"CPUs: {os.cpu_count()}, load average at end: {os.getloadavg()[0]:.2f}.")
    cached = sorted({r["metric"] for r in results} & set(REF_CACHED))
    if cached:
        print(f"{', '.join(cached)}: the reference's embedding/pitch track is cached from the warm-up, so a timed "
              "call processes the reconstruction only (as for every codec after the first in a run).")
    if args.random_models:
        print("Random-init weights (--random-models): values meaningless, compute representative. Whisper "
              "windows are zero-padded to 30 s, so its encoder costs the same for any clip up to 30 s; "
              "'decoder steps' = generate steps of the warm-up call (the cap when the random decoder never "
              "ends its transcript).")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", default="all", help="comma-separated metric names (default: all registered)")
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-pool", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OMP/numba/ORT threads per process")
    ap.add_argument("--random-models", metavar="DIR", default=None,
                    help="build (once) random-init models of the published sizes in DIR and time the model-backed "
                         "metrics on them (values meaningless, compute representative)")
    ap.add_argument("--whisper-tokens-per-s", type=float, default=4.0,
                    help="with --random-models: also time Whisper with generate capped at this many tokens per "
                         "second of clip (0: only the default cap)")
    return ap.parse_args(argv)


def main() -> int:
    args = parse_args()
    _set_threads(args.threads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # loading bars would interleave with the log
    random_dirs = use_random_models(args.random_models) if args.random_models else {}

    from bench.registry import METRICS

    names = METRICS.names() if args.metrics == "all" else [m.strip() for m in args.metrics.split(",") if m.strip()]
    clips = load_clips(args.duration_s)
    duration_s = len(clips["speech"][0]) / clips["speech"][1]
    rows, set_level = plan_rows(names, clips["speech"][2] is not None, args, duration_s, random_dirs)
    from bench.metrics.visqol import numba_available

    print(f"visqol-python numba available: {numba_available()}", flush=True)
    results = []
    for row in rows:
        t0 = time.perf_counter()
        results.append(measure(row, clips[row["domain"]], args, len(results)))
        print(f"  {row['metric']} {row['variant']}: single {results[-1]['single']:.5f} s/s, first call "
              f"{results[-1]['first_s']:.1f} s ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if results:
        print()
        print_table(results, args)
    if set_level:
        embedded = [measure_embedder(name, clips["music"], args) for name in set_level]
        print()
        print_embedder_table(embedded, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
