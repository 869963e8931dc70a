"""Prepare a reference and code it through one codec at one operating point, through the cache.

load (one place: ``bench.audio``) -> channel policy -> optional loudness normalisation -> resample
to the codec's rate -> ``encode`` -> ``to_bytes`` (measured kbps) -> ``from_bytes`` -> ``decode``
-> length check -> resample back to the item's rate -> content-addressed cache, which also keeps
the prepared reference once per item (keyed by its input hash) so reports need neither the
dataset nor this module.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.types import RunConfig

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.codecs.base import Codec, Selection
    from bench.datasets.base import Item


class ItemError(RuntimeError):
    """An input item that cannot be used; the message names the file."""


def prepare_reference(item: Item, cfg: RunConfig) -> tuple[np.ndarray, int, list[str]]:
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


def code_item(sel: Selection, ref: np.ndarray, sr: int, input_hash: str, cache: ReconCache, device: str,
              codec_fingerprint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Run one (codec, operating point) on one prepared reference, through the cache.

    The cache key is the codec's fingerprint (code, parameters, weights, backend versions), the
    operating point, the rates, the input's hash and the resampling code. The prepared reference
    itself is cached too (once per item: :meth:`~bench.cache.ReconCache.ensure_reference`) and the
    reconstruction's metadata names its ``input_hash``, so a report finds both in the cache alone.
    Returns the reconstruction at the item's rate with the reference's shape, and the coded row.
    """
    from bench.cache import cache_key

    codec = sel.codec.load(device)
    rate = codec.spec.sample_rate_hz
    key = cache_key(codec_fingerprint or codec.fingerprint, sel.op, rate, sr, input_hash)
    cache.ensure_reference(input_hash, ref, sr)
    hit = cache.get(key)
    if hit is None:
        y, bitstream, timings = _encode_decode(codec, sel, ref, sr)
        meta = {**timings, "codec_rate_hz": rate, "codec": sel.key, "op": sel.op.name, "input_hash": input_hash}
        cache.put(key, y, sr, bitstream, meta)
        hit = cache.get(key)
        if hit is None:
            raise RuntimeError(f"cache write failed for {sel.label} under {cache.root}")
    elif hit[3].get("input_hash") != input_hash:  # an entry cached before entries named their input
        cache.annotate(key, {"input_hash": input_hash})
    recon, _, bitstream, meta = hit
    duration_s = ref.shape[-1] / sr
    row = {
        "codec": sel.key, "op": sel.op.name, "nominal_kbps": sel.op.nominal_kbps,
        "measured_kbps": len(bitstream) * 8 / duration_s / 1000.0, "n_bytes": len(bitstream),
        "encode_s": meta.get("encode_s"), "decode_s": meta.get("decode_s"), "audio_s": duration_s,
        "status": "ok", "error": None, "cache_key": key,
    }
    return recon, row


def _encode_decode(codec: Codec, sel: Selection, ref: np.ndarray, sr: int) -> tuple[np.ndarray, bytes, dict[str, float]]:
    """Encode, serialise, deserialise and decode one reference: (reconstruction at ``sr``, bitstream, timings).

    The reconstruction is checked (finite, the input's length at the codec's rate), resampled back
    to the item's rate and fitted to the reference's channels and length.
    """
    import torch

    from bench.audio import fit_length, resample, to_channels

    rate = codec.spec.sample_rate_hz
    x = resample(to_channels(ref, codec.spec.channels), sr, rate)
    wav = torch.from_numpy(np.ascontiguousarray(x))[None].to(codec.device)
    with torch.inference_mode():
        t0 = time.perf_counter()
        bitstream = codec.to_bytes(codec.encode(wav, sel.op))
        _sync(codec.device)
        t1 = time.perf_counter()
        decoded = codec.decode(codec.from_bytes(bitstream))
        _sync(codec.device)
        t2 = time.perf_counter()
    y = decoded[0].detach().float().cpu().numpy()
    if not np.all(np.isfinite(y)):
        raise RuntimeError(f"{sel.label} produced NaN/Inf samples")
    check_decoded_length(y.shape[-1], x.shape[-1], rate, sel.label)
    y = fit_length(to_channels(resample(y, rate, sr), ref.shape[0]), ref.shape[-1])
    return y, bitstream, {"encode_s": t1 - t0, "decode_s": t2 - t1}


def check_decoded_length(n_decoded: int, n_input: int, rate_hz: int, label: str) -> None:
    """Fail a pair whose decode is not the input's length (a truncated decode must never score as perfect).

    One tolerance for the harness: :func:`bench.pipeline.scoring.length_mismatch` (1 % or 50 ms), here at
    the codec's rate and before any padding to the reference's length.
    """
    from bench.pipeline.scoring import length_mismatch

    why = length_mismatch(n_input, n_decoded, rate_hz)
    if why:
        raise RuntimeError(f"{label} decoded {n_decoded} samples for an input of {n_input}: {why}")


def _sync(device: Any) -> None:
    """Wait for queued GPU work, so the timings measure the codec and not the launch."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()
