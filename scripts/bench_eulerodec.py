"""EuleroDec figures: parameters per config, encode/decode real-time factor, training step time.

    python scripts/bench_eulerodec.py                          # all configs, CPU, 1 thread
    python scripts/bench_eulerodec.py --configs small6 small12 --device cuda --threads 4
    python scripts/bench_eulerodec.py --usage bench/codecs/checkpoints/eulerodec_small6.safetensors \
        --usage-data train-out/eulerodec-small6/holdout.json

``--usage`` encodes audio with a trained checkpoint and prints, per RVQ stage, the perplexity and the
share of codes used (with the perplexity a uniform code distribution would show on as many frames,
since a short sample cannot show all 2048 codes). ``--usage-data`` is a folder of audio or a training
run's ``holdout.json`` (its held-out files).

Real-time factor (RTF) = processing time / audio duration (below 1 is faster than real time).
Weights are random: speed does not depend on them. The training step is the full EuleroDec step
(mel + compressed STFT L1 + spectral convergence + commitment, EMA codebook update, AdamW) at the
recipe's batch size and excerpt length. Both wall and CPU (process) time are printed: on a shared
machine the wall time depends on the load, which is printed too.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench.models.eulerodec_model import CONFIGS, EuleroDec, model_state_for_saving
from bench.train.eulerodec import RECIPES, EuleroDecTrainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call, after one warm-up call."""
    fn()
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats, (time.process_time() - c) / repeats


def codebook_usage(checkpoint: str, data: str, seconds: float, lufs: float | None) -> None:
    from bench.codecs.eulerodec import EuleroDecCodec
    from bench.train.data import load_holdout, scan
    from bench.train.eulerodec import heldout_usage

    codec = EuleroDecCodec(checkpoint).load("cpu")
    (label, model), = codec.models.items()
    files = load_holdout(data) if data.endswith(".json") else scan([data])
    u = heldout_usage(model, files, max_seconds=seconds, target_lufs=lufs)
    level = "as stored" if lufs is None else f"normalised to {lufs:g} LUFS"
    print(f"{checkpoint} ({label}): {u['seconds']} s of audio ({level}), {u['frames']} frames; a uniform code "
          f"distribution would measure perplexity {u['uniform_perplexity_on_as_many_frames']:.0f} on as many frames")
    for stage, (ppl, adj, used) in enumerate(zip(u["perplexity"], u["perplexity_coverage_adjusted"],
                                                 u["usage_fraction"])):
        print(f"  stage {stage + 1:2d}: perplexity {ppl:7.1f} (coverage-adjusted {adj:7.1f}), codes used "
              f"{used:6.1%} of {model.cfg.codebook_size}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--duration-s", type=float, default=5.0, help="audio length for the RTF measurement")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps per config (0: skip)")
    p.add_argument("--usage", metavar="CHECKPOINT", help="print codebook usage of a trained checkpoint and exit")
    p.add_argument("--usage-data", metavar="DIR_OR_HOLDOUT_JSON")
    p.add_argument("--usage-seconds", type=float, default=600.0)
    p.add_argument("--usage-lufs", default="-16", help="loudness each file is normalised to first, or 'none'")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.usage:
        if not args.usage_data:
            p.error("--usage needs --usage-data")
        codebook_usage(args.usage, args.usage_data, args.usage_seconds,
                       None if args.usage_lufs == "none" else float(args.usage_lufs))
        return
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{'config':8} {'params':>9} {'fp16 MB':>8} {'fps':>7} {'kbps':>7} {'enc RTF':>8} {'dec RTF':>8} "
          f"{'step s':>7} {'step cpu s':>10}")
    for name in args.configs:
        cfg = CONFIGS[name]
        model = EuleroDec(cfg).to(device)
        size_mb = 2 * sum(t.numel() * (2 if t.is_complex() else 1)
                          for t in model_state_for_saving(model).values()) / 1e6
        model.train()
        n = int(args.duration_s * cfg.sample_rate_hz)
        wav = 0.1 * torch.randn(1, 1, n, device=device)
        with torch.no_grad():
            model(wav[..., : cfg.sample_rate_hz // 2])  # initialise the codebooks
        model.eval()
        codes = model.encode(wav)
        enc_s, _ = timed(lambda: model.encode(wav), args.repeats, device)
        dec_s, _ = timed(lambda: model.decode(codes, n), args.repeats, device)
        step_s = step_cpu = float("nan")
        if args.train_steps:
            recipe = RECIPES[name]
            trainer = EuleroDecTrainer(model, lr=recipe.lr)
            batch = 0.1 * torch.randn(recipe.batch_size, 1, int(recipe.excerpt_s * cfg.sample_rate_hz), device=device)
            step_s, step_cpu = timed(lambda: trainer.step(batch), args.train_steps, device)
        print(f"{name:8} {model.num_parameters():>9,} {size_mb:>8.2f} {cfg.frame_rate_hz:>7.3f} "
              f"{cfg.nominal_kbps():>7.4f} {enc_s / args.duration_s:>8.3f} {dec_s / args.duration_s:>8.3f} "
              f"{step_s:>7.2f} {step_cpu:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
