"""Write a training run's validation clips (held-out audio) as WAV files for ``bench run``.

    python scripts/dac_holdout_clips.py train-out/dac-small/holdout.json /tmp/dac-holdout
    bench run --codecs dac,opus@6,opus@8 --dataset folder --root /tmp/dac-holdout \
        --metrics si_sdr,mel_distance,pesq_wb

The clips are exactly those the training run validated on (``bench.train.data.validation_clips``:
the middle 3 s of up to 6 held-out files per group, -16 LUFS, mono, at the model's rate), written
under ``DIR/<group>/`` so the folder dataset knows each clip's domain.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.audio import write_wav
from bench.train.data import load_holdout, validation_clips


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("holdout_json")
    p.add_argument("out_dir")
    p.add_argument("--sample-rate-hz", type=int, default=24000)
    p.add_argument("--duration-s", type=float, default=3.0)
    p.add_argument("--per-group", type=int, default=6)
    args = p.parse_args()
    files = load_holdout(args.holdout_json)
    clips, described = validation_clips(files, args.sample_rate_hz, args.duration_s, args.per_group)
    out = Path(args.out_dir)
    for clip, desc in zip(clips, described):
        src = Path(desc["path"])
        name = f"{src.parent.name}-{src.stem}".replace(" ", "_")
        (out / desc["group"]).mkdir(parents=True, exist_ok=True)
        write_wav(out / desc["group"] / f"{name}.wav", clip.numpy(), args.sample_rate_hz)
    print(f"wrote {len(described)} clips under {out}")


if __name__ == "__main__":
    main()
