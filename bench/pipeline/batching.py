"""Code many items at once, per codec, at every requested operating point: batched, chunked, per-item bitstreams.

:func:`code_batch` takes the items of one codec (already at its rate and channel count) and the operating
points to code, and returns per item and point the real bitstream, its decode and the seconds attributed
to it. Three rules keep every value a function of the item alone (never of its batch-mates):

* **Canonical coding** (a codec with a :class:`~bench.codecs.base.FrameLayout`): an item of T samples is
  zero-padded at the end to ``padded(T) = ceil(T / pad_step) * pad_step``, encoded, and its first
  ``frames(T)`` code frames are its bitstream (``Codec.to_bytes`` of a batch of one, so the measured kbps
  counts no padding). Decoding pads those codes with the codec's fixed pad code (0) back to
  ``frames(padded(T))``, decodes and trims to T. Items of the same padded length are stacked into one
  batch (at most ``max_batch_samples`` samples); coding one item alone (B = 1) is the same definition.
  The decode starts from ``Codec.from_bytes`` of each item's bitstream, so it depends on nothing else.
* **Windows** for long items (padded length over ``chunk_samples + 2 context_samples``): window k
  codes the chunk ``[k C, (k + 1) C)`` with ``context_samples`` X on each side, ``C + 2 X`` samples from
  ``max(0, k C - X)`` (the first window takes its missing left context on the right; the last one ends
  at the item's canonical padded length, so its end sees the same zeros as the unchunked coding, or
  starts X before its chunk if that is earlier). Each window's centre code frames
  are kept and joined into one code sequence (the bitstream format is unchanged); the decode runs the
  same windows over the item's codes (pad code past its end) and keeps each window's centre samples.
  All windows have one length, so they batch together and with other items' windows.
* **Sharing**: points of the same ``Codec.encode_group`` share one computation per batch
  (``Codec.encode_shared``: DAC's full-depth encode, VRVQ's encoder pass and importance map,
  EuleroDec's per-model encode, the transformers codecs' full depth); each point then only slices it.

Timing attribution: a batch's shared computation (input transfer included) is split equally over the
points of its group that were coded and equally over its rows (rows of one batch have the same padded
length, so this is in proportion to padded length); each point adds its own slicing time per row and
the packing of each item's bitstream. Decode time of a batch is split equally over its rows, plus each
item's ``from_bytes``. An item's figures are the sums over its windows. ``CodedAudio.timing`` says so.

Failures stay with their pair: an exception in a batch codes that batch's rows one by one (and, where a
row still fails, point by point), so only the bad item fails; a decode with NaN/Inf fails its pair only.
A codec without a layout (Opus, MP3, PCM, SNAC, plugins) is coded item by item and point by point with
its plain ``encode``/``to_bytes``/``from_bytes``/``decode``, with shared encodes still attributed.

Every result is held until the call returns, so a caller codes a few dozen items per call, not a dataset.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from bench.codecs.base import Codec, FrameLayout, OperatingPoint

#: default batch budget on the CPU (samples of all rows and channels together): 0, one row per batch.
#: Measured with scripts/bench_batching.py on 2 cores (DAC, EuleroDec, 4 s LibriSpeech items): batches
#: of 0.2 M samples ran 1.2-1.5x slower than one row at a time and of 1-8 M samples 2-3x slower (the
#: activations of a batch outgrow the caches); pass max_batch_samples to batch on the CPU anyway
CPU_BATCH_SAMPLES = 0
#: on CUDA the budget is the free memory over this many bytes per sample, clamped to the range below
CUDA_BYTES_PER_SAMPLE = 8192
CUDA_BATCH_SAMPLES = (1_000_000, 64_000_000)

Key = tuple[int, str]  # (item index, operating point name)


@dataclass
class CodedAudio:
    """One (item, operating point): the real bitstream, its decode and the seconds attributed to it."""

    bitstream: bytes  # Codec.to_bytes of a batch-of-one Encoded: the measured kbps
    audio: np.ndarray  # [C, T_i] float32 at the codec's rate, the decode of ``bitstream``
    encode_s: float
    decode_s: float
    timing: str  # how the seconds were attributed


@dataclass(frozen=True)
class Segment:
    """One row of a batch: a whole item (window 0 of 1) or one window of a long item."""

    item: int
    window: int
    n_windows: int
    start: int  # first item sample of the row
    length: int  # samples of the row (the canonical padded length, or the window length)
    keep_start: int  # item samples [keep_start, keep_stop) that this row's decode gives
    keep_stop: int


def plan_segments(item: int, num_samples: int, layout: FrameLayout) -> list[Segment]:
    """The rows an item of ``num_samples`` is coded as: itself padded, or its windows (see the module docstring).

    An item is cut only when its padded length exceeds the window length. The last window ends at the
    item's canonical padded length (or starts ``context`` before its chunk, when that is earlier than
    ``padded - window``), so its end sees the same zeros as the unchunked coding.
    """
    padded = layout.padded(num_samples)
    window = layout.window_samples
    if padded <= window:
        return [Segment(item, 0, 1, 0, padded, 0, num_samples)]
    chunk, context = layout.chunk_samples, layout.context_samples
    n = math.ceil(num_samples / chunk)
    starts = [max(0, k * chunk - context) for k in range(n)]
    starts[-1] = max(0, min((n - 1) * chunk - context, padded - window))
    return [Segment(item, k, n, starts[k], window, k * chunk, min((k + 1) * chunk, num_samples)) for k in range(n)]


def plan_batches(segments: list[Segment], budget_samples: int, channels: int) -> list[list[Segment]]:
    """Rows grouped by length (shortest first, input order within), split so B x C x L <= the budget."""
    by_length: dict[int, list[Segment]] = {}
    for seg in segments:
        by_length.setdefault(seg.length, []).append(seg)
    batches = []
    for length in sorted(by_length):
        rows = by_length[length]
        size = max(1, budget_samples // (length * channels))
        batches += [rows[i : i + size] for i in range(0, len(rows), size)]
    return batches


def default_batch_samples(device: Any) -> int:
    """The batch budget for ``device``: :data:`CPU_BATCH_SAMPLES` (one row), or from the free memory on CUDA.

    CUDA: free bytes / :data:`CUDA_BYTES_PER_SAMPLE`, within :data:`CUDA_BATCH_SAMPLES` (not measured
    on a GPU yet); a batch that runs out of memory is retried row by row, so it costs time, not results.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(dev)
        low, high = CUDA_BATCH_SAMPLES
        return int(min(max(free_bytes // CUDA_BYTES_PER_SAMPLE, low), high))
    return CPU_BATCH_SAMPLES


def _sync(device: Any) -> None:
    """Wait for queued GPU work, so the timers measure the codec and not the launch."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def _check_input(x: Any, channels: int) -> np.ndarray:
    """``x`` as float32 ``[C, T]`` with the codec's channel count and finite samples, else ValueError."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != channels:
        raise ValueError(f"expected audio [C={channels}, T], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("audio contains NaN or Inf samples")
    return arr


def _groups(codec: Codec, ops: list[OperatingPoint]) -> list[tuple[str | None, list[OperatingPoint]]]:
    """Points by encode group, in the order given; a point without a group is a group of its own."""
    groups: dict[Any, tuple[str | None, list[OperatingPoint]]] = {}
    for op in ops:
        group = codec.encode_group(op)
        groups.setdefault(group if group is not None else ("alone", op.name), (group, []))[1].append(op)
    return list(groups.values())


def _share_note(group: str | None, n_points: int) -> str:
    """How the shared computation of a group was attributed."""
    if group is None:
        return "no shared encode"
    return f"shared '{group}' encode split over {n_points} point{'s' if n_points != 1 else ''}"


@dataclass
class _Tally:
    """What one (item, point) has collected so far: payload parts per window, seconds, batch sizes, audio."""

    parts: dict[int, Any] = field(default_factory=dict)
    pieces: dict[int, np.ndarray] = field(default_factory=dict)
    encode_s: float = 0.0
    decode_s: float = 0.0
    encode_batches: list[int] = field(default_factory=list)
    decode_batches: list[int] = field(default_factory=list)
    alone: bool = False
    bitstream: bytes = b""


class _Batched:
    """One :func:`code_batch` call for a codec with a frame layout."""

    def __init__(self, codec: Codec, layout: FrameLayout, ops: list[OperatingPoint], inputs: list[np.ndarray],
                 budget: int) -> None:
        self.codec, self.layout, self.ops, self.inputs, self.budget = codec, layout, ops, inputs, budget
        self.channels = codec.spec.channels
        self.rate = codec.spec.sample_rate_hz
        self.failed: dict[Key, Exception] = {}
        self.tally: dict[Key, _Tally] = {}
        self.segments: dict[int, list[Segment]] = {}
        self.share: dict[str, str] = {}

    def fail(self, item: int, op: OperatingPoint, exc: Exception) -> None:
        """Record the first failure of a pair (later stages skip it)."""
        self.failed.setdefault((item, op.name), exc)

    def ok(self, item: int, op: OperatingPoint) -> bool:
        """Whether the pair has not failed."""
        return (item, op.name) not in self.failed

    def of(self, item: int, op: OperatingPoint) -> _Tally:
        """The tally of a pair."""
        return self.tally.setdefault((item, op.name), _Tally())

    # --- frames of a row -------------------------------------------------------------------------
    def keep_frames(self, seg: Segment, op: OperatingPoint) -> tuple[int, int]:
        """Item code frames this row's encode contributes: its centre (the last row: up to the item's end)."""
        hop = self.layout.op_hop(op)
        stop = (self.layout.frames(op, self.inputs[seg.item].shape[-1]) if seg.window == seg.n_windows - 1
                else seg.keep_stop // hop)
        return seg.keep_start // hop, stop

    def decode_frames(self, seg: Segment, op: OperatingPoint) -> tuple[int, int]:
        """Item code frames a row decodes from: those under its span (the rest is the pad code)."""
        first = seg.start // self.layout.op_hop(op)
        total = self.layout.frames(op, self.inputs[seg.item].shape[-1])
        return first, min(first + self.layout.frames(op, seg.length), total)

    # --- encode ----------------------------------------------------------------------------------
    def stack(self, batch: list[Segment]) -> torch.Tensor:
        """The rows' audio ``[B, C, L]`` on the codec's device, zero past each item's end."""
        import torch

        x = np.zeros((len(batch), self.channels, batch[0].length), dtype=np.float32)
        for b, seg in enumerate(batch):
            piece = self.inputs[seg.item][:, seg.start : seg.start + seg.length]
            x[b, :, : piece.shape[-1]] = piece
        return torch.from_numpy(x).to(self.codec.device)

    def encode_rows(self, ops: list[OperatingPoint], batch: list[Segment]) -> list[dict[str, tuple[Any, float]]]:
        """Encode a batch once for a group of points: per row and point, its kept payload part and seconds."""
        codec, t0 = self.codec, time.perf_counter()
        x = self.stack(batch)
        codec.encode_shared(x, ops[0])
        _sync(codec.device)
        shared_s = (time.perf_counter() - t0) / len(ops) / len(batch)
        rows: list[dict[str, tuple[Any, float]]] = [{} for _ in batch]
        for op in ops:
            t1 = time.perf_counter()
            encoded = codec.encode(x, op)
            _sync(codec.device)
            own_s = (time.perf_counter() - t1) / len(batch)
            for b, seg in enumerate(batch):
                t2 = time.perf_counter()
                first, stop = self.keep_frames(seg, op)
                offset = seg.start // self.layout.op_hop(op)
                part = codec.split_payload(encoded, b, first - offset, stop - offset)
                rows[b][op.name] = (part, shared_s + own_s + time.perf_counter() - t2)
        return rows

    def take(self, batch: list[Segment], rows: list[dict[str, tuple[Any, float]]], alone: bool = False) -> None:
        """Keep the encoded parts and seconds of a batch's rows."""
        for seg, row in zip(batch, rows, strict=True):
            for op in self.ops:
                if op.name in row:
                    tally = self.of(seg.item, op)
                    tally.parts[seg.window], secs = row[op.name]
                    tally.encode_s += secs
                    tally.encode_batches.append(len(batch))
                    tally.alone |= alone

    def encode_group(self, group: str | None, ops: list[OperatingPoint]) -> None:
        """Every row at every point of one group: batch by batch, a failed batch row by row."""
        for op in ops:
            self.share[op.name] = _share_note(group, len(ops))
        rows = [s for segs in self.segments.values() for s in segs if any(self.ok(s.item, op) for op in ops)]
        for batch in plan_batches(rows, self.budget, self.channels):
            try:
                self.take(batch, self.encode_rows(ops, batch))
            except Exception:  # noqa: BLE001 - a failing batch is retried row by row, below
                self.codec.clear_memo()
                for seg in batch:
                    self.encode_alone(ops, seg)

    def encode_alone(self, ops: list[OperatingPoint], seg: Segment) -> None:
        """One row by itself, all points of the group at once, else point by point; failures stay with the pair."""
        try:
            self.take([seg], self.encode_rows(ops, [seg]), alone=True)
            return
        except Exception as exc:  # noqa: BLE001 - isolate the failing point, below
            if len(ops) == 1:
                self.fail(seg.item, ops[0], exc)
                return
        for op in ops:
            try:
                self.take([seg], self.encode_rows([op], [seg]), alone=True)
            except Exception as exc:  # noqa: BLE001 - the pair fails, the others go on
                self.fail(seg.item, op, exc)

    def pack(self) -> None:
        """Each item's bitstream at each point: its windows' parts joined, ``to_bytes`` of a batch of one."""
        from bench.codecs.base import Encoded

        for item, segs in self.segments.items():
            for op in self.ops:
                if not self.ok(item, op):
                    continue
                tally = self.of(item, op)
                t0 = time.perf_counter()
                try:
                    parts = [tally.parts[s.window] for s in segs]
                    payload = parts[0] if len(parts) == 1 else self.codec.concat_payloads(parts)
                    encoded = Encoded(self.codec.name, op.name, self.rate, self.channels,
                                      int(self.inputs[item].shape[-1]), 1, payload)
                    tally.bitstream = self.codec.to_bytes(encoded)
                except Exception as exc:  # noqa: BLE001 - e.g. a payload the codec's own shape check refuses
                    self.fail(item, op, exc)
                tally.encode_s += time.perf_counter() - t0
                tally.parts.clear()

    # --- decode ----------------------------------------------------------------------------------
    def decode_inputs(self, op: OperatingPoint) -> tuple[list[Segment], dict[Segment, Any]]:
        """Per row of every item coded at ``op``: its codes, from ``from_bytes`` of the item's bitstream."""
        rows: list[Segment] = []
        parts: dict[Segment, Any] = {}
        for item, segs in self.segments.items():
            if not self.ok(item, op):
                continue
            tally = self.of(item, op)
            t0 = time.perf_counter()
            try:
                encoded = self.codec.from_bytes(tally.bitstream)
                for seg in segs:
                    parts[seg] = self.codec.split_payload(encoded, 0, *self.decode_frames(seg, op))
                rows += segs
            except Exception as exc:  # noqa: BLE001 - the pair fails, the others go on
                self.fail(item, op, exc)
            tally.decode_s += time.perf_counter() - t0
        return rows, parts

    def decode_rows(self, op: OperatingPoint, batch: list[Segment], parts: dict[Segment, Any]) -> None:
        """Decode a batch of rows (their codes padded to the row length's frames) and keep each row's centre."""
        from bench.codecs.base import Encoded

        codec, length, t0 = self.codec, batch[0].length, time.perf_counter()
        payload = codec.merge_payloads([parts[s] for s in batch], self.layout.frames(op, length))
        audio = codec.decode(Encoded(codec.name, op.name, self.rate, self.channels, length, len(batch), payload))
        _sync(codec.device)
        y = audio.detach().float().cpu().numpy()
        if y.shape != (len(batch), self.channels, length):
            raise RuntimeError(f"{codec.name}@{op.name} decoded {y.shape} for a batch of {len(batch)} x "
                               f"{self.channels} x {length}")
        secs = (time.perf_counter() - t0) / len(batch)
        for b, seg in enumerate(batch):
            tally = self.of(seg.item, op)
            tally.pieces[seg.window] = y[b, :, seg.keep_start - seg.start : seg.keep_stop - seg.start].copy()
            tally.decode_s += secs
            tally.decode_batches.append(len(batch))

    def decode(self, op: OperatingPoint) -> None:
        """Every item coded at ``op``, batch by batch; a failed batch row by row."""
        rows, parts = self.decode_inputs(op)
        for batch in plan_batches(rows, self.budget, self.channels):
            try:
                self.decode_rows(op, batch, parts)
            except Exception:  # noqa: BLE001 - retried row by row, below
                for seg in batch:
                    try:
                        self.decode_rows(op, [seg], parts)
                        self.of(seg.item, op).alone = True
                    except Exception as exc:  # noqa: BLE001 - the pair fails, the others go on
                        self.fail(seg.item, op, exc)

    # --- results ---------------------------------------------------------------------------------
    def result(self, item: int, op: OperatingPoint) -> CodedAudio | Exception:
        """The pair's :class:`CodedAudio`, or the exception that failed it (a non-finite decode included)."""
        if not self.ok(item, op):
            return self.failed[(item, op.name)]
        tally = self.of(item, op)
        segs = self.segments[item]
        audio = np.concatenate([tally.pieces[s.window] for s in segs], axis=-1).astype(np.float32, copy=False)
        if not np.all(np.isfinite(audio)):
            return RuntimeError(f"{self.codec.name}@{op.name} produced NaN/Inf samples")
        return CodedAudio(tally.bitstream, audio, tally.encode_s, tally.decode_s, self.note(item, op, tally))

    def note(self, item: int, op: OperatingPoint, tally: _Tally) -> str:
        """The ``timing`` text of a pair."""
        segs = self.segments[item]
        rows = f"{len(segs)} windows of {segs[0].length} samples" if len(segs) > 1 else \
            f"padded to {segs[0].length} samples"
        again = " (a failed batch was retried row by row)" if tally.alone else ""
        return (f"batched, {rows}; encode: batch of {'+'.join(map(str, tally.encode_batches))} rows, time split "
                f"equally over the rows, {self.share.get(op.name, 'no shared encode')}, plus this point's own "
                f"slicing and packing; decode: batch of {'+'.join(map(str, tally.decode_batches))} rows, split "
                f"equally, plus from_bytes{again}")

    def run(self, results: list[dict[str, CodedAudio | Exception]]) -> None:
        """Encode every group, pack, decode every point, fill ``results``."""
        for group, ops in _groups(self.codec, self.ops):
            self.encode_group(group, ops)
        self.pack()
        for op in self.ops:
            self.decode(op)
        for item in self.segments:
            for op in self.ops:
                results[item][op.name] = self.result(item, op)


def _code_items(codec: Codec, ops: list[OperatingPoint], inputs: dict[int, np.ndarray],
                results: list[dict[str, CodedAudio | Exception]]) -> None:
    """A codec without a frame layout: item by item, point by point, its plain encode/decode."""
    import torch

    groups = _groups(codec, ops)
    for item, x in inputs.items():
        wav = torch.from_numpy(np.ascontiguousarray(x))[None].to(codec.device)
        codec.clear_memo()
        for group, group_ops in groups:
            t0 = time.perf_counter()
            try:
                codec.encode_shared(wav, group_ops[0])
                _sync(codec.device)
            except Exception as exc:  # noqa: BLE001 - every point of the group fails for this item
                for op in group_ops:
                    results[item][op.name] = exc
                continue
            shared_s = (time.perf_counter() - t0) / len(group_ops)
            note = f"item by item; {_share_note(group, len(group_ops))}, plus this point's own encode and packing"
            for op in group_ops:
                results[item][op.name] = _code_one(codec, op, wav, shared_s, note)


def _code_one(codec: Codec, op: OperatingPoint, wav: torch.Tensor, shared_s: float,
              note: str) -> CodedAudio | Exception:
    """One item at one point with the codec's plain calls; the exception instead of a result if it fails."""
    try:
        t0 = time.perf_counter()
        bitstream = codec.to_bytes(codec.encode(wav, op))
        _sync(codec.device)
        t1 = time.perf_counter()
        decoded = codec.decode(codec.from_bytes(bitstream))
        _sync(codec.device)
        t2 = time.perf_counter()
        audio = decoded[0].detach().float().cpu().numpy()[:, : wav.shape[-1]]
        if not np.all(np.isfinite(audio)):
            raise RuntimeError(f"{codec.name}@{op.name} produced NaN/Inf samples")
        return CodedAudio(bitstream, np.ascontiguousarray(audio, dtype=np.float32), shared_s + t1 - t0, t2 - t1, note)
    except Exception as exc:  # noqa: BLE001 - the pair fails, the others go on
        return exc


def code_batch(codec: Codec, ops: list[OperatingPoint], inputs: list[np.ndarray], *,
               max_batch_samples: int | None = None) -> list[dict[str, CodedAudio | Exception]]:
    """Code every input at every point; per input ``{op.name: CodedAudio, or the Exception that failed that pair}``.

    ``inputs[i]``: ``[C, T_i]`` float32 at ``codec.spec.sample_rate_hz`` with ``codec.spec.channels``
    channels (already resampled). ``codec`` is loaded (``codec.device`` is used). ``max_batch_samples``
    bounds B x C x L of a batch (at least one row; default :func:`default_batch_samples`). One failing
    pair never fails the others. See the module docstring for the canonical coding, windows and timing attribution.
    """
    import torch

    results: list[dict[str, CodedAudio | Exception]] = [{} for _ in inputs]
    valid: dict[int, np.ndarray] = {}
    for i, x in enumerate(inputs):
        try:
            valid[i] = _check_input(x, codec.spec.channels)
        except ValueError as exc:
            results[i] = {op.name: exc for op in ops}
    if not ops or not valid:
        return results
    layout = codec.frame_layout()
    codec.clear_memo()
    try:
        with torch.inference_mode():
            if layout is None:
                _code_items(codec, ops, valid, results)
            else:
                job = _Batched(codec, layout, ops, [valid.get(i, np.zeros((0, 0), np.float32))
                                                    for i in range(len(inputs))],
                               default_batch_samples(codec.device) if max_batch_samples is None else max_batch_samples)
                job.segments = {i: plan_segments(i, x.shape[-1], layout) for i, x in valid.items()}
                job.run(results)
    finally:
        codec.clear_memo()
    return results
