#!/usr/bin/env python
"""Scale benchmark of the runner (issue 15): figures printed, not a timed test.

On real speech (LibriSpeech utterances from ../shared/audio, or any folder with --root):

1. Bare compute: the same codec and metric calls in a plain single-process loop on one torch
   thread (no cache, no store, no pool): the work itself, per codec point and per metric.
2. ``bench run`` with ``--workers 1``, with one worker per core, and ``--engine ray`` (a local Ray
   instance) when ray is installed: wall time, throughput (seconds of audio per wall second) and
   the overhead ratio wall / (bare compute / cores) (1.0 = every core busy with real work).
3. The metric pool's speed-up: scoring only (every reconstruction cached), 1 worker vs all cores.
4. A projection of the full job (LibriTTS test-other, 6.7 h of speech, x ``--codecs all`` x the
   default metrics) from the per-part figures of step 1, on this machine and on a 16-core machine.

Usage: python scripts/bench_scale.py [--root DIR] [--limit 30] [--codecs opus@6,opus@12,mp3@32]
       [--metrics si_sdr,mel_distance,pesq_wb,stoi] [--project-codecs all] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "audio" / "train" / "speech" / "librispeech-train-clean-100"
TEST_OTHER_S = 6.7 * 3600  # LibriTTS test-other, as measured in issue 15


def bare_compute(cfg: object, codecs: str, metrics: str) -> dict[str, float]:
    """Seconds of codec work per codec@op and of metric work per metric, in a plain loop (one torch thread)."""
    import numpy as np
    import torch

    from bench.audio import fit_length, resample, to_channels
    from bench.codecs.base import select_codecs
    from bench.metrics.base import select_metrics
    from bench.pipeline.code import prepare_reference
    from bench.pipeline.run import plan_run
    from bench.pipeline.scoring import score_pair

    torch.set_num_threads(1)
    plan = plan_run(cfg)  # type: ignore[arg-type]
    sels = select_codecs(codecs)
    specs = select_metrics(metrics)
    t: dict[str, float] = {"audio_s": 0.0}
    for n, item in enumerate([plan.items[0], *plan.items]):  # the first item twice: a warm-up pass not counted
        if n == 1:
            t = {"audio_s": 0.0}
        ref, sr, _ = prepare_reference(item, cfg)  # type: ignore[arg-type]
        t["audio_s"] += ref.shape[-1] / sr
        for sel in sels:
            codec = sel.codec.load("cpu")
            t0 = time.perf_counter()
            x = resample(to_channels(ref, codec.spec.channels), sr, codec.spec.sample_rate_hz)
            with torch.inference_mode():
                wav = torch.from_numpy(np.ascontiguousarray(x))[None]
                y = codec.decode(codec.from_bytes(codec.to_bytes(codec.encode(wav, sel.op))))[0].numpy()
            y = fit_length(to_channels(resample(y, codec.spec.sample_rate_hz, sr), ref.shape[0]), ref.shape[-1])
            t[f"codec {sel.label}"] = t.get(f"codec {sel.label}", 0.0) + time.perf_counter() - t0
            # one call per pair, as the runner scores it: the pair's alignment and resampling once
            # ("scoring prep"), then each metric's own call (its compute_s)
            t0 = time.perf_counter()
            res = score_pair(ref, y, sr, specs, item=item)
            wall = time.perf_counter() - t0
            metric_s = 0.0
            for name, value in res.values.items():
                t[f"metric {name}"] = t.get(f"metric {name}", 0.0) + value.compute_s
                metric_s += value.compute_s
            t["scoring prep"] = t.get("scoring prep", 0.0) + wall - metric_s
    return t


def timed_run(cfg: object) -> tuple[float, dict]:
    """Wall seconds of one ``run_benchmark`` and its manifest's timing."""
    import json

    from bench.pipeline.run import run_benchmark

    t0 = time.perf_counter()
    run_dir = run_benchmark(cfg, say=lambda m: None)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    return wall, json.loads((run_dir / "manifest.json").read_text()).get("timing", {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(SHARED))
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--codecs", default="opus@6,opus@12,mp3@32")
    ap.add_argument("--metrics", default="si_sdr,mel_distance,pesq_wb,stoi")
    ap.add_argument("--project-codecs", default="all", help="codecs of the projection's per-part figures")
    ap.add_argument("--project-limit", type=int, default=3, help="items for the projection's per-part figures")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    from dataclasses import replace

    from bench.types import RunConfig

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    base = RunConfig(codecs=args.codecs, dataset="folder", root=args.root, dataset_options={"domain": "speech"},
                     metrics=args.metrics, limit=args.limit, progress=False, device="cpu")
    bare = bare_compute(base, args.codecs, args.metrics)
    audio_s = bare.pop("audio_s")
    compute = sum(bare.values())
    ideal = compute / cores
    print(f"machine: {cores} cores; {args.limit} items, {audio_s:.1f} s of audio; codecs {args.codecs}; "
          f"metrics {args.metrics}")
    print(f"bare single-process compute: {compute:.1f} s (ideal wall on {cores} cores: {ideal:.1f} s)")
    rows = []
    engines = [("--workers 1", dict(workers=1)), (f"--workers {cores}", dict(workers=cores))]
    if not args.no_ray:
        try:
            import ray  # noqa: F401

            engines.append((f"--engine ray (local, {cores} CPUs)", dict(workers=cores, engine="ray")))
        except ImportError:
            print("ray not installed: --engine ray not measured")
    for name, opts in engines:
        tag = name.split()[0].strip("-") + str(opts.get("workers"))
        cfg = replace(base, out_dir=str(work / f"run-{tag}"), cache_dir=str(work / f"cache-{tag}"), **opts)
        wall, _ = timed_run(cfg)
        rows.append((name, wall, audio_s / wall, wall / ideal))
    print(f"\n{'engine':<34} {'wall s':>8} {'audio s / wall s':>17} {'overhead ratio':>15}")
    for name, wall, thr, ratio in rows:
        print(f"{name:<34} {wall:8.1f} {thr:17.2f} {ratio:15.2f}")
    print("overhead ratio = wall / (bare compute / cores); target <= 1.2")

    # the metric pool alone: every reconstruction cached (the all-cores run's cache), fresh run dirs
    pool = {}
    for w in (1, cores):
        cfg = replace(base, out_dir=str(work / f"pool{w}"), cache_dir=str(work / f"cache-workers{cores}"), workers=w)
        pool[w] = timed_run(cfg)[0]
    if cores > 1:
        print(f"\nscoring from cache: 1 worker {pool[1]:.1f} s, {cores} workers {pool[cores]:.1f} s: "
              f"pool speed-up {pool[1] / pool[cores]:.2f}x (target 1.8x on 2 cores)")

    measured = next((ratio for name, _, _, ratio in rows if name == f"--workers {cores}"), 1.1)
    project(base, args, cores, measured)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def project(base: object, args: argparse.Namespace, cores: int, ratio: float) -> None:
    """Per-part figures (codec and metric seconds per audio second) and the full job's projected wall time."""
    from dataclasses import replace

    from bench.metrics import DEFAULT_METRICS

    metrics = ",".join(DEFAULT_METRICS)
    cfg = replace(base, codecs=args.project_codecs, metrics=metrics, limit=args.project_limit)  # type: ignore[type-var]
    t = bare_compute(cfg, args.project_codecs, metrics)
    audio_s = t.pop("audio_s")
    codec_s = sum(v for k, v in t.items() if k.startswith("codec "))
    n_points = sum(1 for k in t if k.startswith("codec "))
    metric_s = sum(v for k, v in t.items() if k.startswith("metric ") or k == "scoring prep")
    print(f"\nper-part figures on {args.project_limit} items ({audio_s:.1f} s), one core each, "
          f"--codecs {args.project_codecs} ({n_points} points) x default metrics:")
    for k, v in sorted(t.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<36} {v / audio_s:8.4f} s per audio s")
    per_audio = (codec_s + metric_s) / audio_s
    print(f"  total: codecs {codec_s / audio_s:.3f} + metrics {metric_s / audio_s:.3f} = {per_audio:.3f} "
          "core-seconds per audio second (metrics per point are counted once per point above)")
    total = TEST_OTHER_S * per_audio
    print(f"projection, LibriTTS test-other ({TEST_OTHER_S / 3600:.1f} h) x these points x default metrics:")
    for n in (cores, 16):  # the overhead ratio measured above on this machine's all-cores run
        print(f"  {n:>2} cores at overhead ratio {ratio:.2f}: {total / n * ratio / 3600:7.1f} h")
    print("  (a GPU takes the codec share off the cores; its figure is not measured on this machine)")


if __name__ == "__main__":
    sys.exit(main())
