"""VRVQ rate-distortion on held-out audio: the VBR level sweep vs CBR of the same checkpoint vs DAC.

    python scripts/bench_vrvq.py [--vrvq CKPT] [--dac CKPT] [--holdout train-out/vrvq-small/holdout.json]
                                 [--excerpt-s 10] [--threads 1]

Every held-out training file (the split ``bench train`` made, read from the training run's
``holdout.json`` or the VRVQ card) gives one excerpt: the middle ``--excerpt-s`` seconds, mono,
resampled to the codec rate, normalised to -16 LUFS (the training loudness). Each excerpt is
encoded, serialised to bytes, read back and decoded at every operating point; measured kbps comes
from the length of the bytes (harness header included), mel distance (DAC 7-scale) and SI-SDR from
the decoded audio. Prints one row per (codec, point) with means over the excerpts, per-domain mel
distance, and, for each VBR level, the CBR mel distance and SI-SDR linearly interpolated at the same
measured kbps (negative "d mel" = VBR better), and a paired comparison at matched measured kbps per
excerpt: each excerpt's VBR mel distance (and SI-SDR) minus its own CBR curve interpolated at that
excerpt's VBR kbps, with the mean, a 95 % bootstrap CI over excerpts and a Wilcoxon signed-rank p
(bench.reports.stats, the report's statistics). Also prints how many codebooks VBR used on average and
the empirical entropy of the per-frame counts (bits/frame; the bitstream spends ceil(log2 N_q)).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


def load_excerpts(holdout: list[dict], sample_rate_hz: int, excerpt_s: float) -> list[tuple[str, str, torch.Tensor]]:
    from bench.audio import load_audio, loudness_lufs, normalize_loudness, resample, to_channels

    out = []
    for entry in holdout:
        path = entry["path"]
        full = load_audio(path)
        start_s = max(0.0, (full.duration_s - excerpt_s) / 2)
        x = to_channels(full.samples, 1, "mono")
        a = int(start_s * full.sample_rate_hz)
        x = x[:, a : a + int(excerpt_s * full.sample_rate_hz)]
        x = resample(x, full.sample_rate_hz, sample_rate_hz)
        if not math.isfinite(loudness_lufs(x, sample_rate_hz)):
            continue
        x, _ = normalize_loudness(x, sample_rate_hz, -16.0)
        x = np.clip(x, -1.0, 1.0)
        out.append((Path(path).name, entry["group"], torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]))
    return out


def interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Linear interpolation of ys(xs) at x; NaN outside the range of xs."""
    order = np.argsort(xs)
    xs_s, ys_s = np.asarray(xs)[order], np.asarray(ys)[order]
    if x < xs_s[0] or x > xs_s[-1]:
        return math.nan
    return float(np.interp(x, xs_s, ys_s))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vrvq", default=None, help="VRVQ checkpoint (default: the shipped one)")
    p.add_argument("--dac", default=None, help="DAC checkpoint (default: the shipped one; 'none' to skip)")
    p.add_argument("--holdout", default=None, help="holdout.json of the training run (default: the VRVQ card's list)")
    p.add_argument("--excerpt-s", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from bench.codecs.vrvq import VRVQCodec
    from bench.metrics.mel import MultiScaleMelDistance
    from bench.metrics.si_sdr import si_sdr_db

    vrvq = VRVQCodec(args.vrvq).load()
    codecs = [("vrvq", vrvq)]
    if args.dac != "none":
        try:
            from bench.codecs.dac import DACCodec

            dac = DACCodec(args.dac)
            dac.spec  # noqa: B018 - raises when the checkpoint is missing
            codecs.append(("dac", dac.load()))
        except Exception as exc:  # noqa: BLE001
            print(f"(DAC skipped: {exc})")
    holdout = (json.loads(Path(args.holdout).read_text())["held_out_files"] if args.holdout
               else vrvq.card["training"]["holdout"])
    sr = vrvq.spec.sample_rate_hz
    excerpts = load_excerpts(holdout, sr, args.excerpt_s)
    total_s = sum(x.shape[-1] for _, _, x in excerpts) / sr
    print(f"{len(excerpts)} held-out excerpts, {total_s:.0f} s at {sr} Hz "
          f"({', '.join(f'{g}: {n}' for g, n in sorted(_count(excerpts).items()))})")
    mel = MultiScaleMelDistance(sample_rate_hz=sr)

    rows = []
    t0 = time.time()
    for key, codec in codecs:
        for op in codec.spec.operating_points:
            bits = 0
            seconds = 0.0
            mels, sdrs, groups, counts, hist, kbps = [], [], [], [], None, []
            for _, group, x in excerpts:
                enc = codec.encode(x, op)
                data = codec.to_bytes(enc)
                y = codec.decode(codec.from_bytes(data))
                bits += len(data) * 8
                seconds += x.shape[-1] / sr
                kbps.append(len(data) * 8 / (x.shape[-1] / sr) / 1000)
                with torch.no_grad():
                    mels.append(float(mel(y, x)[0]))
                sdrs.append(float(si_sdr_db(y[:, 0].double(), x[:, 0].double())[0]))
                groups.append(group)
                if isinstance(enc.payload, dict):
                    c = enc.payload["counts"].reshape(-1)
                    counts.append(float(c.float().mean()))
                    h = torch.bincount(c, minlength=codec.config.n_codebooks + 1)
                    hist = h if hist is None else hist + h
            by_group = defaultdict(list)
            for g, m in zip(groups, mels):
                by_group[g].append(m)
            rows.append({"codec": key, "op": op.name, "kind": op.kind, "nominal_kbps": op.nominal_kbps,
                         "measured_kbps": bits / seconds / 1000, "mel_distance": float(np.mean(mels)),
                         "si_sdr_db": float(np.nanmean(sdrs)),
                         "per_item": {"kbps": kbps, "mel_distance": mels, "si_sdr_db": sdrs},
                         "mel_by_group": {g: float(np.mean(v)) for g, v in sorted(by_group.items())},
                         "mean_codebooks": float(np.mean(counts)) if counts else None,
                         "count_entropy_bits": _entropy_bits(hist) if hist is not None and op.kind == "vbr" else None})
    print(f"(coding and scoring took {time.time() - t0:.0f} s)\n")

    cbr = [r for r in rows if r["codec"] == "vrvq" and r["kind"] == "cbr"]
    cbr_kbps = [r["measured_kbps"] for r in cbr]
    groups = sorted({g for _, g, _ in excerpts})
    head = f"{'codec@op':12s} {'kind':4s} {'nominal':>8s} {'kbps':>7s} {'cb/frame':>8s} {'mel':>6s} {'SI-SDR':>7s}  " + \
        " ".join(f"{'mel ' + g[:3]:>8s}" for g in groups) + f"  {'CBR mel@kbps':>12s} {'d mel':>6s} {'d SI-SDR':>8s} {'H(count)':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = (f"{r['codec'] + '@' + r['op']:12s} {r['kind']:4s} {r['nominal_kbps']:8.3f} {r['measured_kbps']:7.3f} "
                f"{(r['mean_codebooks'] if r['mean_codebooks'] is not None else float('nan')):8.2f} "
                f"{r['mel_distance']:6.3f} {r['si_sdr_db']:7.2f}  "
                + " ".join(f"{r['mel_by_group'].get(g, float('nan')):8.3f}" for g in groups))
        if r["codec"] == "vrvq" and r["kind"] == "vbr":
            m_cbr = interp(r["measured_kbps"], cbr_kbps, [c["mel_distance"] for c in cbr])
            s_cbr = interp(r["measured_kbps"], cbr_kbps, [c["si_sdr_db"] for c in cbr])
            r["cbr_mel_at_same_kbps"], r["cbr_si_sdr_at_same_kbps"] = m_cbr, s_cbr
            line += (f"  {m_cbr:12.3f} {r['mel_distance'] - m_cbr:+6.3f} {r['si_sdr_db'] - s_cbr:+8.2f} "
                     f"{r['count_entropy_bits']:8.2f}")
        print(line)
    paired_at_matched_kbps(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def paired_at_matched_kbps(rows: list[dict]) -> None:
    """Per VBR level: per-excerpt VBR minus the excerpt's own CBR curve at the same measured kbps."""
    from bench.reports.stats import bootstrap_ci, wilcoxon_p

    cbr = [r for r in rows if r["codec"] == "vrvq" and r["kind"] == "cbr"]
    vbr = [r for r in rows if r["codec"] == "vrvq" and r["kind"] == "vbr"]
    if not cbr or not vbr:
        return
    print("\npaired at matched measured kbps (per excerpt: VBR - CBR interpolated on that excerpt's CBR curve; "
          "mel: negative = VBR better; SI-SDR: positive = VBR better; 95 % bootstrap CI over excerpts)")
    print(f"{'level':8s} {'kbps':>6s} {'n':>3s} {'d mel':>7s} {'95% CI':>17s} {'p':>7s} {'d SI-SDR':>8s} {'95% CI':>17s} {'p':>7s}")
    for r in vbr:
        out = [f"{r['op']:8s} {r['measured_kbps']:6.2f}"]
        for metric in ("mel_distance", "si_sdr_db"):
            d = []
            for i, k in enumerate(r["per_item"]["kbps"]):
                xs = [c["per_item"]["kbps"][i] for c in cbr]
                ys = [c["per_item"][metric][i] for c in cbr]
                d.append(r["per_item"][metric][i] - interp(k, xs, ys))
            ci = bootstrap_ci(d, n_boot=4000, seed=0)  # NaN (outside the CBR range) dropped
            finite = [v for v in d if math.isfinite(v)]
            p = wilcoxon_p(finite) if len(finite) > 1 else math.nan
            if metric == "mel_distance":
                out.append(f"{ci.n_items:3d}")
            out.append(f"{ci.mean:+7.3f} [{ci.lo:+7.3f}, {ci.hi:+7.3f}] {p:7.4f}")
            r[f"paired_{metric}"] = {"mean": ci.mean, "lo": ci.lo, "hi": ci.hi, "n": ci.n_items, "p": p}
        print(" ".join(out))


def _entropy_bits(hist: torch.Tensor) -> float:
    """Empirical entropy (bits per frame) of the codebook counts: what entropy coding the side
    information (sent here at a fixed ceil(log2 N_q) bits) could bring it down to."""
    q = hist.double() / hist.sum()
    q = q[q > 0]
    return float(-(q * q.log2()).sum()) + 0.0  # no "-0.00" for a single count


def _count(excerpts) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for _, g, _ in excerpts:
        out[g] += 1
    return out


if __name__ == "__main__":
    raise SystemExit(main())
