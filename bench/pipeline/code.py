"""Prepare a reference, and code prepared references through one codec at its operating points, through the cache.

load (one place: ``bench.audio``) -> channel policy -> optional loudness normalisation -> resample
to the codec's rate -> batched ``encode`` -> ``to_bytes`` per item (measured kbps) -> ``from_bytes``
-> batched ``decode`` (``bench.pipeline.batching``) -> length check -> resample back to the item's
rate -> content-addressed cache, which also keeps the prepared reference once per item (keyed by its
input hash) so reports need neither the dataset nor this module.

:func:`run_code_job` is the unit of codec work that every engine runs where the codec's model is
loaded (the runner's coding thread, a Ray actor): plain data in, plain data out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.types import RunConfig

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.codecs.base import Codec, OperatingPoint
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


@dataclass
class PreparedRef:
    """A prepared reference travelling to the codec work: the item's id and path, samples [C, T], rate, hash."""

    item_id: str
    path: str
    audio: np.ndarray
    sample_rate_hz: int
    input_hash: str
    item: Item | None = None  # the frozen item (domain, transcript): what device metrics need to apply


@dataclass
class CodeJob:
    """Codec work for one codec (selection key) on a group of prepared references.

    ``ops[item_id]`` names the operating points that item still needs (the others are done).
    """

    key: str
    refs: list[PreparedRef]
    ops: dict[str, list[str]]
    #: metrics scored where the codec runs, on its device, batched over each item's reconstructions
    #: (``bench.pipeline.scoring.score_pairs``); the driver sends the rest to the CPU pool
    device_metrics: list[str] = field(default_factory=list)
    align: str = "xcorr"


@dataclass
class CodeOutcome:
    """One coded pair: the reconstruction at the item's rate and its coded-row fields, or the failure reason."""

    item_id: str
    op: str
    recon: np.ndarray | None = None
    row: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: the device metrics' results, as :func:`bench.pipeline.engine.score_task` returns them (None: not scored here)
    scores: dict[str, Any] | None = None
    #: the codec's memory in this job (``peak_memory_mb``, ``memory_kind``: bench.pipeline.memory); None: not coded
    memory: dict[str, Any] | None = None


def pair_cache_key(codec: Codec, fingerprint: str, op: OperatingPoint, ref: PreparedRef) -> str:
    """The cache key of one (codec, operating point, prepared reference): see :func:`bench.cache.cache_key`."""
    from bench.cache import cache_key

    return cache_key(fingerprint, op, codec.spec.sample_rate_hz, ref.sample_rate_hz, ref.input_hash,
                     pipeline=coding_pipeline_fingerprint())


def coding_pipeline_fingerprint() -> str:
    """The harness code between the item and the codec: resampling and channels, this module, the batching."""
    from bench.cache import pipeline_fingerprint
    from bench.fingerprint import digest, source_fingerprint

    global _PIPELINE_FP
    if _PIPELINE_FP is None:
        _PIPELINE_FP = digest([pipeline_fingerprint(),
                               source_fingerprint(["bench.pipeline.code", "bench.pipeline.batching"])])
    return _PIPELINE_FP


_PIPELINE_FP: str | None = None


def run_code_job(codec: Codec, fingerprint: str, job: CodeJob, cache: ReconCache) -> list[CodeOutcome]:
    """Code every (item, operating point) of a job: cached pairs are read, the rest coded in batches and cached.

    The codec must be loaded. A failing pair is an outcome with its reason; the others go on.
    """
    if getattr(codec, "external", False):
        outcomes = [read_external(codec, job.key, ref, codec.spec.op(name), fingerprint, cache)
                    for ref in job.refs for name in job.ops.get(ref.item_id, [])]
        if job.device_metrics:
            score_on_device(codec, job, outcomes)
        return outcomes
    hits: list[CodeOutcome] = []
    coders: dict[tuple[int, int], Codec] = {}  # the codec per input format (one, except for follows_input codecs)
    misses: dict[tuple[int, int], dict[str, list[tuple[PreparedRef, str]]]] = {}  # format -> op name -> (ref, key)
    for ref in job.refs:
        cache.ensure_reference(ref.input_hash, ref.audio, ref.sample_rate_hz)
        fmt = (ref.sample_rate_hz, int(ref.audio.shape[0])) if getattr(codec, "follows_input", False) else (0, 0)
        if fmt not in coders:
            coders[fmt] = codec.for_input(*fmt) if fmt != (0, 0) else codec  # type: ignore[attr-defined]
        coder = coders[fmt]
        for name in job.ops.get(ref.item_id, []):
            key = pair_cache_key(coder, fingerprint, coder.spec.op(name), ref)
            outcome = _from_cache(cache, key, ref, coder.spec.op(name), job.key)
            if outcome is None:
                misses.setdefault(fmt, {}).setdefault(name, []).append((ref, key))
            else:
                hits.append(outcome)
    memory: dict[str, Any] = {}
    coded: list[CodeOutcome] = []
    if misses:
        from bench.pipeline.memory import measure_job

        with measure_job(codec, memory):
            for fmt, group in misses.items():
                coded += _code_misses(coders[fmt], job.key, group, cache)
        for outcome in coded:
            outcome.memory = memory
    outcomes = hits + coded
    if job.device_metrics:
        score_on_device(codec, job, outcomes)
    return outcomes


def read_external(codec: Codec, codec_key: str, ref: PreparedRef, op: OperatingPoint, fingerprint: str,
                  cache: ReconCache) -> CodeOutcome:
    """A reconstruction made elsewhere (``decoded:DIR``): read, brought to the item's rate, length-checked, cached.

    Measured kbps comes from the bitstream's size when the folder has one; else it is not measured (None).
    """
    from bench.audio import fit_length, resample, to_channels

    label = f"{codec_key}@{op.name}"
    key = pair_cache_key(codec, fingerprint, op, ref)
    try:
        audio, rate, n_bytes, path = codec.reconstruction(ref.item_id, ref.path)  # type: ignore[attr-defined]
        y = resample(audio, rate, ref.sample_rate_hz)
        check_decoded_length(y.shape[-1], ref.audio.shape[-1], ref.sample_rate_hz, label)
        if not np.all(np.isfinite(y)):
            raise RuntimeError(f"{path} holds NaN/Inf samples")
    except Exception as exc:  # noqa: BLE001 - this pair fails with the reason, the run goes on
        return CodeOutcome(ref.item_id, op.name, error=f"{label} on {ref.path}: {type(exc).__name__}: {exc}")
    y = fit_length(to_channels(y, ref.audio.shape[0], "keep"), ref.audio.shape[-1])
    timing = "decoded elsewhere: no coding time measured" + ("" if n_bytes is not None else
                                                                "; rate not measured (no bitstream beside it)")
    cache.put(key, y, ref.sample_rate_hz, b"", {"codec": codec_key, "op": op.name, "input_hash": ref.input_hash,
                                                "source": path, "n_bytes_external": n_bytes, "timing": timing})
    hit = cache.get(key)
    if hit is None:
        return CodeOutcome(ref.item_id, op.name, error=f"cache write failed for {label} under {cache.root}")
    duration_s = ref.audio.shape[-1] / ref.sample_rate_hz
    row = {"codec": codec_key, "op": op.name, "nominal_kbps": op.nominal_kbps,
           "measured_kbps": None if n_bytes is None else n_bytes * 8 / duration_s / 1000.0, "n_bytes": n_bytes,
           "encode_s": None, "decode_s": None, "audio_s": duration_s, "status": "ok", "error": None,
           "cache_key": key, "timing": timing}
    return CodeOutcome(ref.item_id, op.name, hit[0], row)


def score_on_device(codec: Codec, job: CodeJob, outcomes: list[CodeOutcome]) -> None:
    """Score the job's device metrics on the codec's device: one batch per item over its reconstructions."""
    from bench.pipeline.scoring import score_pairs
    from bench.registry import METRICS

    specs = [METRICS.get(n) for n in job.device_metrics]
    refs = {r.item_id: r for r in job.refs}
    by_item: dict[str, list[CodeOutcome]] = {}
    for o in outcomes:
        if o.recon is not None and o.error is None:
            by_item.setdefault(o.item_id, []).append(o)
    for item_id, group in by_item.items():
        ref = refs[item_id]
        results = score_pairs(ref.audio, [o.recon for o in group if o.recon is not None], ref.sample_rate_hz, specs,
                              item=ref.item, align=job.align, device=str(codec.device))
        for o, res in zip(group, results):
            o.scores = {"values": {k: (v.value, v.error, v.extra, v.compute_s) for k, v in res.values.items()},
                        "skipped": {k: sk.reason for k, sk in res.skipped.items()}, "prep_s": res.prep_s}


def _from_cache(cache: ReconCache, key: str, ref: PreparedRef, op: OperatingPoint, codec_key: str) -> CodeOutcome | None:
    """The cached pair as an outcome, or None when it is not cached (or its entry was damaged)."""
    hit = cache.get(key)
    if hit is None:
        return None
    if hit[3].get("input_hash") != ref.input_hash:  # an entry cached before entries named their input
        cache.annotate(key, {"input_hash": ref.input_hash})
    recon, _, bitstream, meta = hit
    return CodeOutcome(ref.item_id, op.name, recon, _row(codec_key, op, ref, bitstream, meta, key))


def _row(codec_key: str, op: OperatingPoint, ref: PreparedRef, bitstream: bytes, meta: dict[str, Any],
         key: str) -> dict[str, Any]:
    """The coded-row fields of a pair (``item_id`` is the runner's)."""
    duration_s = ref.audio.shape[-1] / ref.sample_rate_hz
    return {"codec": codec_key, "op": op.name, "nominal_kbps": op.nominal_kbps, "measured_kbps": len(bitstream) * 8 / duration_s / 1000.0,
            "n_bytes": len(bitstream), "encode_s": meta.get("encode_s"), "decode_s": meta.get("decode_s"),
            "audio_s": duration_s, "status": "ok", "error": None, "cache_key": key, "timing": meta.get("timing")}


def _code_misses(codec: Codec, codec_key: str, misses: dict[str, list[tuple[PreparedRef, str]]],
                 cache: ReconCache) -> list[CodeOutcome]:
    """Code the pairs the cache did not have, in batches over items, every operating point of an item together."""
    from bench.audio import resample, to_channels
    from bench.pipeline.batching import code_batch

    if not misses:
        return []
    spec = codec.spec
    refs = {ref.item_id: ref for pairs in misses.values() for ref, _ in pairs}
    keys = {(ref.item_id, op): key for op, pairs in misses.items() for ref, key in pairs}
    rate = spec.sample_rate_hz
    inputs = {i: resample(to_channels(r.audio, spec.channels, "keep"), r.sample_rate_hz, rate).astype(np.float32)
              for i, r in refs.items()}
    ops = [spec.op(name) for name in misses]
    order = list(refs)
    results = code_batch(codec, ops, [inputs[i] for i in order])
    out: list[CodeOutcome] = []
    for item_id, coded in zip(order, results):
        ref = refs[item_id]
        for op in ops:
            if (item_id, op.name) not in keys:
                continue  # coded with its batch-mates' points; this item did not need it
            try:
                out.append(_store_pair(codec, codec_key, ref, op, coded[op.name], inputs[item_id].shape[-1],
                                       keys[(item_id, op.name)], cache))
            except Exception as exc:  # noqa: BLE001 - e.g. the cache's disk is full: this pair fails, the run goes on
                out.append(CodeOutcome(item_id, op.name, error=f"{codec_key}@{op.name}: {type(exc).__name__}: {exc}"))
    return out


def _store_pair(codec: Codec, codec_key: str, ref: PreparedRef, op: OperatingPoint, coded: Any, n_input: int,
                key: str, cache: ReconCache) -> CodeOutcome:
    """Check one coded pair, bring it back to the item's rate and channels, cache it and read it back."""
    from bench.audio import fit_length, resample, to_channels

    label = f"{codec_key}@{op.name}"
    if isinstance(coded, BaseException):
        return CodeOutcome(ref.item_id, op.name, error=f"{label} failed on {ref.path}: {type(coded).__name__}: {coded}")
    rate = codec.spec.sample_rate_hz
    try:
        if not np.all(np.isfinite(coded.audio)):
            raise RuntimeError(f"{label} produced NaN/Inf samples")
        check_decoded_length(coded.audio.shape[-1], n_input, rate, label)
    except RuntimeError as exc:
        return CodeOutcome(ref.item_id, op.name, error=f"{label} failed on {ref.path}: RuntimeError: {exc}")
    y = resample(coded.audio, rate, ref.sample_rate_hz)
    y = fit_length(to_channels(y, ref.audio.shape[0], "keep"), ref.audio.shape[-1])
    meta = {"encode_s": coded.encode_s, "decode_s": coded.decode_s, "timing": coded.timing, "codec_rate_hz": rate,
            "codec": codec_key, "op": op.name, "input_hash": ref.input_hash}
    cache.put(key, y, ref.sample_rate_hz, coded.bitstream, meta)
    hit = cache.get(key)  # score what the cache serves later: the stored (24-bit) samples, not the float decode
    if hit is None:
        raise RuntimeError(f"cache write failed for {label} under {cache.root}")
    recon, _, bitstream, meta = hit
    return CodeOutcome(ref.item_id, op.name, recon, _row(codec_key, op, ref, bitstream, meta, key))


def check_decoded_length(n_decoded: int, n_input: int, rate_hz: int, label: str) -> None:
    """Fail a pair whose decode is not the input's length (a truncated decode must never score as perfect).

    One tolerance for the harness: :func:`bench.pipeline.scoring.length_mismatch` (1 % or 50 ms), here at
    the codec's rate and before any padding to the reference's length.
    """
    from bench.pipeline.scoring import length_mismatch

    why = length_mismatch(n_input, n_decoded, rate_hz)
    if why:
        raise RuntimeError(f"{label} decoded {n_decoded} samples for an input of {n_input}: {why}")
