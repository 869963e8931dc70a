"""Real-time factor of coding at batch size 1 vs batched (bench.pipeline.batching.code_batch).

For the shipped DAC, VRVQ and EuleroDec and a random-init EnCodec 24 kHz of the published size
(transformers' default EncodecConfig, saved with save_pretrained into a temporary folder): code ~20
LibriSpeech utterances (../shared/audio, 16 kHz, resampled to the codec's rate) at the codec's default
sweep, once item by item (one code_batch call per item: batch size 1) and once in one code_batch call
(batched), after a warm-up. Prints, per codec and device, the wall seconds per audio second (RTF, all
points together and per point), the speed-up, and whether the two runs gave identical bitstreams and
decodes (max |difference|). CPU always; CUDA when present.

    python scripts/bench_batching.py [--items 20] [--max-seconds 0] [--codecs dac,vrvq,eulerodec,encodec]
                                     [--devices cpu,cuda] [--threads N] [--points sweep|all|N]
                                     [--budgets 0,1000000,8000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.audio import load_audio, resample  # noqa: E402
from bench.pipeline.batching import code_batch, default_batch_samples  # noqa: E402

LIBRISPEECH = ROOT.parent / "shared" / "audio" / "train" / "speech" / "librispeech-train-clean-100"


def utterances(n: int, max_s: float) -> list[tuple[np.ndarray, int]]:
    files = sorted(LIBRISPEECH.glob("*.flac"))[:n]
    if not files:
        raise SystemExit(f"no LibriSpeech utterances under {LIBRISPEECH}")
    out = []
    for path in files:
        audio = load_audio(path)
        x = audio.samples[:1].astype(np.float32)
        if max_s > 0:
            x = x[:, : int(max_s * audio.sample_rate_hz)]
        out.append((x, audio.sample_rate_hz))
    return out


def make_codec(kind: str, tmp: Path):
    if kind == "encodec":
        import transformers

        from bench.codecs.encodec import EncodecCodec

        folder = tmp / "encodec"
        if not folder.exists():
            torch.manual_seed(0)
            transformers.EncodecModel(transformers.EncodecConfig()).save_pretrained(str(folder))
        return EncodecCodec(checkpoint=str(folder))
    from bench.codecs.dac import DACCodec
    from bench.codecs.eulerodec import EuleroDecCodec
    from bench.codecs.vrvq import VRVQCodec

    return {"dac": DACCodec, "vrvq": VRVQCodec, "eulerodec": EuleroDecCodec}[kind]()


def points(codec, which: str):
    ops = codec.spec.operating_points
    if which == "all":
        return ops
    if which == "sweep":
        sweep = codec.spec.sweep
        return [p for p in ops if p.name in sweep] if sweep else ops
    return ops[-int(which):]


def compare(a, b) -> tuple[bool, float]:
    same, diff = True, 0.0
    for ra, rb in zip(a, b, strict=True):
        for name, x in ra.items():
            y = rb[name]
            if isinstance(x, Exception) or isinstance(y, Exception):
                return False, float("nan")
            same &= x.bitstream == y.bitstream
            diff = max(diff, float(np.abs(x.audio - y.audio).max()))
    return same, diff


def bench_one(kind: str, device: str, items, which: str, budgets: list[int], tmp: Path) -> None:
    codec = make_codec(kind, tmp).load(device)
    rate = codec.spec.sample_rate_hz
    inputs = [resample(x, sr, rate).astype(np.float32) for x, sr in items]
    ops = points(codec, which)
    audio_s = sum(x.shape[-1] for x in inputs) / rate
    code_batch(codec, ops, inputs[:2])  # warm-up (kernels, allocator)
    t0 = time.perf_counter()
    single = [code_batch(codec, ops, [x])[0] for x in inputs]
    rtf1 = (time.perf_counter() - t0) / audio_s
    print(f"{kind:10s} {device:5s} {len(inputs):3d} items {audio_s:7.1f} s x {len(ops)} points | "
          f"RTF batch 1 {rtf1:.4f} ({rtf1 / len(ops):.4f}/point)", flush=True)
    for budget in budgets:
        t1 = time.perf_counter()
        batched = code_batch(codec, ops, inputs, max_batch_samples=budget or None)
        wall = time.perf_counter() - t1
        same, diff = compare(single, batched)
        rtfb = wall / audio_s
        attributed = sum(r.encode_s + r.decode_s for d in batched for r in d.values() if not isinstance(r, Exception))
        label = f"{budget:,}" if budget else f"default ({default_batch_samples(codec.device):,})"
        print(f"{'':16s} batched, max_batch_samples {label}: RTF {rtfb:.4f} ({rtfb / len(ops):.4f}/point) | "
              f"speed-up x{rtf1 / rtfb:.2f} | attributed {attributed:.1f} s of {wall:.1f} s | identical "
              f"bitstreams {same}, max |decode diff| {diff:.2e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=0.0, help="crop each utterance (0: whole)")
    parser.add_argument("--codecs", default="dac,vrvq,eulerodec,encodec")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--points", default="sweep", help="sweep, all, or N (the N highest points)")
    parser.add_argument("--budgets", default="0", help="max_batch_samples values to try, comma separated (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    items = utterances(args.items, args.max_seconds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"cuda {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for kind in args.codecs.split(","):
                bench_one(kind, device, items, args.points, [int(b) for b in args.budgets.split(',')], Path(tmp))


if __name__ == "__main__":
    main()
