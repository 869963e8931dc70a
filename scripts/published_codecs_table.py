"""Figures for the published codecs on real speech, with random weights (nothing is downloaded).

Builds EnCodec 24 kHz, Mimi and DAC 44.1 kHz at their published sizes with random initialisation,
saves each with ``save_pretrained`` into a temporary folder, runs ``bench run`` on real speech next
to Opus and the in-repo DAC, and prints one row per operating point: nominal and measured kbps,
parameters and CPU real-time factors of encode and decode (from the run's store). The quality
numbers of random weights mean nothing; the rates, sizes and speeds are the real ones.

Usage: python scripts/published_codecs_table.py [--speech DIR] [--limit N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import torch

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "audio" / "fixtures" / "speech-librispeech-ogg"


def build_models(root: Path) -> dict[str, Path]:
    """Random-init published-size models saved as save_pretrained folders."""
    import transformers

    torch.manual_seed(0)
    folders = {}
    for name, model in (("encodec", transformers.EncodecModel(transformers.EncodecConfig())),
                        ("mimi", transformers.MimiModel(transformers.MimiConfig())),
                        ("dac", transformers.DacModel(transformers.DacConfig()))):
        folders[name] = root / name
        model.save_pretrained(folders[name])
    return folders


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speech", default=str(SPEECH), help="a folder of speech files")
    p.add_argument("--limit", type=int, default=3)
    p.add_argument("--keep", default=None, help="keep the models and the run here")
    args = p.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-published-"))
    folders = build_models(root / "models")
    from bench.cli import main as bench_main

    codecs = ",".join([f"encodec:{folders['encodec']}@*", f"mimi:{folders['mimi']}@*",
                       f"dac:{folders['dac']}@*", "opus@6", "dac@8"])
    out = root / "run"
    code = bench_main(["run", "--codecs", codecs, "--dataset", "folder", "--root", args.speech,
                       "--dataset-opt", "domain=speech", "--limit", str(args.limit), "--metrics", "si_sdr",
                       "--workers", "1", "--no-progress", "--out", str(out), "--cache-dir", str(root / "cache")])
    if code != 0:
        return code
    with sqlite3.connect(out / "results.sqlite") as con:
        rows = con.execute("SELECT codec, op, AVG(nominal_kbps), AVG(measured_kbps), SUM(encode_s), SUM(decode_s), "
                           "SUM(audio_s) FROM coded WHERE status='ok' GROUP BY codec, op").fetchall()
        info = {c: json.loads(i) for c, i in con.execute("SELECT codec, info FROM codec_info")}
    print(f"{'codec':<10} {'op':>4} {'nominal':>8} {'measured':>9} {'params':>8} {'enc RTF':>8} {'dec RTF':>8}")
    for codec, op, nominal, measured, enc_s, dec_s, audio_s in sorted(rows, key=lambda r: (r[0], r[2])):
        label = codec.split(":")[0] + ("[random]" if ":" in codec else "[shipped]" if codec == "dac" else "")
        params = info.get(codec, {}).get("parameters")
        enc = f"{enc_s / audio_s:.3f}" if enc_s is not None else "-"
        dec = f"{dec_s / audio_s:.3f}" if dec_s is not None else "-"
        print(f"{label:<16} {op:>4} {nominal:8.2f} {measured:9.2f} {params / 1e6 if params else 0:7.1f}M {enc:>8} {dec:>8}")
    print(f"(run in {out}; encode time of a shared full-depth encode is charged to the first operating point)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
