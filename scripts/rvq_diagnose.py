"""Per-stage RVQ health of a DAC or VRVQ checkpoint on held-out audio: is every residual stage alive?

    python scripts/rvq_diagnose.py                                   # the shipped dac_small, its held-out speech
    python scripts/rvq_diagnose.py bench/codecs/checkpoints/vrvq_small.safetensors --contains librispeech
    python scripts/rvq_diagnose.py OUT/dac_small.safetensors --files a.flac b.flac --json stats.json

For each stage k = 1..N the table gives (definitions in ``bench.models.rvq_stats``):

  perplexity, used   the code histogram's exp(entropy) and the share of the K codes chosen at least once
  E_k/E_k-1          energy the stage leaves of its input residual, ||r_k||^2 / ||r_k-1||^2 (>= 1: dead)
  lookup err         relative quantisation error in the stage's codebook_dim lookup space
  latent err         ||z - z_q(k)||^2 / ||z||^2 after k stages
  mel(k), SI-SDR(k)  the decoder with the first k codebooks (eval mode, bench.train.dac.evaluate)

Audio: the checkpoint card's held-out files (``training.holdout``, the files its training never saw), of
``--group`` (speech) and, with ``--contains``, whose path holds that text; or ``--files``. Each clip is the
middle ``--clip-s`` seconds at -16 LUFS, as the trainer validates (0: whole files for the stage figures,
and their first 10 s, cut to the shortest clip, for the mel figures).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from bench.models.checkpoint import load_checkpoint, load_module
from bench.models.rvq_stats import StageStats, dead_stages, stage_stats
from bench.train.dac import evaluate
from bench.train.data import AudioFile, _info, read_normalised

DEFAULT = Path(__file__).resolve().parents[1] / "bench" / "codecs" / "checkpoints" / "dac_small.safetensors"


def load_generator(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The DAC or VRVQ network of a bench checkpoint (eval mode) and its card."""
    tensors, card = load_checkpoint(path)
    if card["model"] == "dac":
        from bench.models.dac_model import DAC, DACConfig

        model: torch.nn.Module = DAC(DACConfig.from_dict(card["config"]))
    elif card["model"] == "vrvq":
        from bench.models.vrvq_model import VRVQ, VRVQConfig

        model = VRVQ(VRVQConfig.from_dict(card["config"]))
    else:
        raise SystemExit(f"{path}: a {card['model']!r} checkpoint; this script reads dac and vrvq ones")
    load_module(model, tensors, "generator", source=str(path))
    return model.eval(), card


def heldout_paths(card: dict[str, Any], group: str, contains: str | None) -> list[str]:
    """The card's held-out files of ``group`` (and holding ``contains``)."""
    paths = [h["path"] for h in card.get("training", {}).get("holdout", []) if h.get("group") == group]
    return [p for p in paths if contains is None or contains in p]


def read_clips(paths: list[str], sample_rate_hz: int, clip_s: float) -> list[torch.Tensor]:
    """``[1, 1, T]`` clips: the middle ``clip_s`` seconds (whole files at 0), -16 LUFS, mono."""
    clips = []
    for p in paths:
        duration_s, sr, ch = _info(Path(p))
        f = AudioFile(p, "eval", p, duration_s, sr, ch)
        length_s = duration_s if clip_s <= 0 else min(clip_s, duration_s)
        start_s = max(0.0, (duration_s - length_s) / 2)
        x, audible = read_normalised(f, sample_rate_hz, start_s, length_s, -16.0)
        if audible:
            clips.append(torch.from_numpy(x).float().view(1, 1, -1))
    if not clips:
        raise SystemExit("no audible clips to measure")
    return clips


def decoder_curve(model: torch.nn.Module, clips: list[torch.Tensor], sample_rate_hz: int, n_max: int
                  ) -> list[dict[str, float]]:
    """Mean mel distance and SI-SDR with 1..n_max codebooks (clips cut to a common length)."""
    length = min(c.shape[-1] for c in clips)
    batch = torch.cat([c[..., :length] for c in clips])
    return [evaluate(model, batch, sample_rate_hz, n) for n in range(1, n_max + 1)]


def print_table(stats: list[StageStats], curve: list[dict[str, float]], kbps_per_stage: float) -> None:
    """The per-stage table and a one-line verdict."""
    print(f"{'n':>2} {'kbps':>5} {'perplexity':>10} {'used':>6} {'E_k/E_k-1':>9} {'lookup err':>10} "
          f"{'latent err':>10} {'mel(n)':>7} {'SI-SDR(n)':>9}")
    for s, c in zip(stats, curve):
        print(f"{s.stage:>2} {s.stage * kbps_per_stage:>5.2f} {s.perplexity:>10.1f} {s.usage_fraction:>6.3f} "
              f"{s.energy_ratio:>9.3f} {s.lookup_error:>10.3f} {s.latent_error:>10.3f} "
              f"{c['val/mel_distance']:>7.3f} {c['val/si_sdr_db']:>9.2f}")
    dead = dead_stages(stats)
    gain = curve[0]["val/mel_distance"] - curve[-1]["val/mel_distance"]
    print(f"stages removing under 2% of their input energy: {dead or 'none'}; "
          f"mel distance 1 -> {len(curve)} codebooks: {gain:+.3f} lower")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default=str(DEFAULT), help="a dac or vrvq .safetensors checkpoint")
    p.add_argument("--files", nargs="+", help="audio files to measure (default: the card's held-out files)")
    p.add_argument("--group", default="speech", help="held-out group of the card to use")
    p.add_argument("--contains", help="only held-out files whose path holds this text (e.g. librispeech)")
    p.add_argument("--clip-s", type=float, default=3.0, help="middle seconds of each file (0: whole files)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_generator(Path(args.checkpoint))
    cfg = model.config  # DACConfig (VRVQ keeps its backbone's there)
    paths = args.files or heldout_paths(card, args.group, args.contains)
    clips = read_clips(paths, cfg.sample_rate_hz, args.clip_s)
    with torch.no_grad():
        latents = [model.encoder(model.pad(c)) for c in clips]
    stats = stage_stats(model.quantizer, latents)
    curve = decoder_curve(model, clips if args.clip_s > 0 else [c[..., : 10 * cfg.sample_rate_hz] for c in clips],
                          cfg.sample_rate_hz, cfg.n_codebooks)
    frames = sum(z.shape[-1] for z in latents)
    print(f"{args.checkpoint}: {card['model']} {card.get('config_name', '?')}, {card.get('training', {}).get('steps', '?')} "
          f"steps; {len(clips)} clips, {frames} frames ({frames / cfg.frame_rate_hz:.1f} s)")
    print_table(stats, curve, cfg.kbps(1))
    if args.json:
        out = {"checkpoint": args.checkpoint, "files": paths, "frames": frames,
               "stages": [s.to_dict() for s in stats],
               "per_n_codebooks": [{k.removeprefix("val/"): round(v, 4) for k, v in c.items()} for c in curve]}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
