"""Prepare a reference and code it through one codec at one operating point, through the cache.

load (one place: ``bench.audio``) -> channel policy -> optional loudness normalisation -> resample
to the codec's rate -> ``encode`` -> ``to_bytes`` (measured kbps) -> ``from_bytes`` -> ``decode``
-> length check -> resample back to the item's rate -> content-addressed cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.types import RunConfig


class ItemError(RuntimeError):
    """An input item that cannot be used; the message names the file."""


def prepare_reference(item, cfg: RunConfig) -> tuple[np.ndarray, int, list[str]]:
    """Load an item, apply the channel and loudness policy. Returns (audio [C, T], rate, notes)."""
    from bench.audio import (
        AudioError,
        check_samples,
        load_audio,
        normalize_loudness,
        to_channels,
    )

    try:
        audio = load_audio(item.path, start_s=item.start_s, duration_s=item.duration_s,
                           stream_index=int(item.extra.get("stream_index", 0)))
    except AudioError as exc:
        raise ItemError(str(exc)) from exc
    x = to_channels(audio.samples, None, cfg.channel_policy)
    notes = check_samples(x, item.path)
    if not np.all(np.isfinite(x)):
        raise ItemError(f"{item.path}: contains NaN/Inf samples; refusing to code it")
    if cfg.loudness_lufs is not None:
        x, gain_db = normalize_loudness(x, audio.sample_rate_hz, cfg.loudness_lufs)
        notes.append(f"loudness gain {gain_db:+.2f} dB")
    return x, audio.sample_rate_hz, notes


def code_item(sel, ref: np.ndarray, sr: int, input_hash: str, cache, device: str,
              codec_fingerprint: str | None = None) -> tuple[np.ndarray, dict]:
    """Run one (codec, operating point) on one prepared reference, through the cache.

    The cache key is the codec's fingerprint (code, parameters, weights, backend versions), the
    operating point, the rates, the input's hash and the resampling code. Returns the
    reconstruction at the item's rate with the reference's shape, and the coded row.
    """
    import torch

    from bench.audio import fit_length, resample, to_channels
    from bench.cache import cache_key

    codec = sel.codec.load(device)
    rate = codec.spec.sample_rate_hz
    key = cache_key(codec_fingerprint or codec.fingerprint, sel.op, rate, sr, input_hash)
    hit = cache.get(key)
    if hit is None:
        x = resample(to_channels(ref, codec.spec.channels), sr, rate)
        wav = torch.from_numpy(np.ascontiguousarray(x))[None].to(codec.device)
        with torch.inference_mode():
            t0 = time.perf_counter()
            bitstream = codec.to_bytes(codec.encode(wav, sel.op))
            _sync(codec.device)
            t1 = time.perf_counter()
            y = codec.decode(codec.from_bytes(bitstream))
            _sync(codec.device)
            t2 = time.perf_counter()
        y = y[0].detach().float().cpu().numpy()
        if not np.all(np.isfinite(y)):
            raise RuntimeError(f"{sel.label} produced NaN/Inf samples")
        check_decoded_length(y.shape[-1], x.shape[-1], rate, sel.label)
        y = fit_length(to_channels(resample(y, rate, sr), ref.shape[0]), ref.shape[-1])
        meta = {"encode_s": t1 - t0, "decode_s": t2 - t1, "codec_rate_hz": rate, "codec": sel.key, "op": sel.op.name}
        cache.put(key, y, sr, bitstream, meta)
        hit = cache.get(key)
        if hit is None:
            raise RuntimeError(f"cache write failed for {sel.label} under {cache.root}")
    recon, _, bitstream, meta = hit
    duration_s = ref.shape[-1] / sr
    row = {
        "codec": sel.key, "op": sel.op.name, "nominal_kbps": sel.op.nominal_kbps,
        "measured_kbps": len(bitstream) * 8 / duration_s / 1000.0, "n_bytes": len(bitstream),
        "encode_s": meta.get("encode_s"), "decode_s": meta.get("decode_s"), "audio_s": duration_s,
        "status": "ok", "error": None, "cache_key": key,
    }
    return recon, row


def check_decoded_length(n_decoded: int, n_input: int, rate_hz: int, label: str) -> None:
    """Fail a pair whose decode is not the input's length (a truncated decode must never score as perfect).

    One tolerance for the harness: :func:`bench.pipeline.scoring.length_mismatch` (1 % or 50 ms), here at
    the codec's rate and before any padding to the reference's length.
    """
    from bench.pipeline.scoring import length_mismatch

    why = length_mismatch(n_input, n_decoded, rate_hz)
    if why:
        raise RuntimeError(f"{label} decoded {n_decoded} samples for an input of {n_input}: {why}")


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def reconstruction_path(run_dir: str | Path, cache_key: str) -> Path | None:
    """Path of a cached reconstruction (FLAC at the item's rate) recorded in a run, or None.

    None also when the entry fails its digest check: a report never plays a damaged file.
    """
    from bench.cache import ReconCache
    from bench.store import Store

    run_dir = Path(run_dir)
    with Store(run_dir / "results.sqlite", readonly=True) as store:
        ids = store.run_ids()
        cache_dir = store.manifest(ids[-1]).get("cache_dir") if ids else None
    cache = ReconCache(cache_dir, readonly=True)
    return cache.audio_path(cache_key) if cache.get(cache_key) is not None else None
