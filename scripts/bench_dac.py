"""DAC figures: parameter counts per config, encode/decode real-time factor, training step time.

    python scripts/bench_dac.py                       # all configs, CPU, 1 thread
    python scripts/bench_dac.py --configs small tiny --device cuda --threads 4

Real-time factor (RTF) = processing time / audio duration (below 1 is faster than real time).
Weights are random: speed does not depend on them. The training step is the full DAC step
(discriminator update, then generator update with mel + feature + adversarial + VQ losses) at the
recipe's batch size of 0.38 s excerpts. Numbers depend on the machine and its load: the script
prints the load average so figures from a shared machine can be read with that in mind.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench.models.dac_model import CONFIGS, DAC, count_parameters
from bench.train.dac import RECIPES, DACTrainer
from bench.train.discriminators import Discriminator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--duration-s", type=float, default=2.0, help="audio length for the RTF")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=2, help="timed training steps per config (0: skip)")
    p.add_argument("--train-configs", nargs="+", default=["tiny", "small"],
                   help="configs whose training step is timed (the published ones are slow on CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'config':>6} {'rate':>6} {'hop':>4} {'n_q':>4} {'kbps':>6} {'gen M':>7} {'enc M':>7} {'dec M':>7} "
          f"{'disc M':>7} {'enc RTF':>8} {'dec RTF':>8} {'step s':>7} {'batch':>5}")
    for name in args.configs:
        cfg = CONFIGS[name]
        recipe = RECIPES[name]
        with torch.device("meta"):
            disc_params = count_parameters(Discriminator(recipe.discriminator))
        torch.manual_seed(0)
        model = DAC(cfg).to(device).eval()
        x = 0.1 * torch.randn(1, 1, int(args.duration_s * cfg.sample_rate_hz), device=device)
        with torch.no_grad():
            codes = model.encode(x, cfg.n_codebooks)
            enc_s = timed(lambda: model.encode(x, cfg.n_codebooks), args.repeats, device)
            dec_s = timed(lambda: model.decode(codes, x.shape[-1]), args.repeats, device)
        step_s = float("nan")
        if args.train_steps and name in args.train_configs:
            disc = Discriminator(recipe.discriminator).to(device)
            gen = DAC(cfg).to(device)
            trainer = DACTrainer(gen, disc, sample_rate_hz=cfg.sample_rate_hz, n_codebooks=cfg.n_codebooks)
            batch = 0.1 * torch.randn(recipe.batch_size, 1, int(recipe.excerpt_s * cfg.sample_rate_hz), device=device)
            step_s = timed(lambda: trainer.step(batch), args.train_steps, device)
        print(f"{name:>6} {cfg.sample_rate_hz:>6} {cfg.hop_length:>4} {cfg.n_codebooks:>4} "
              f"{cfg.kbps(cfg.n_codebooks):>6.2f} {count_parameters(model) / 1e6:>7.2f} "
              f"{count_parameters(model.encoder) / 1e6:>7.2f} {count_parameters(model.decoder) / 1e6:>7.2f} "
              f"{disc_params / 1e6:>7.2f} {enc_s / args.duration_s:>8.3f} {dec_s / args.duration_s:>8.3f} "
              f"{step_s:>7.2f} {recipe.batch_size:>5}", flush=True)


if __name__ == "__main__":
    main()
