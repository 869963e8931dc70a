"""The Codec interface, operating points, the bitstream header and codec selection.

A codec has a static :class:`CodecSpec`, a ``load()`` that fetches weights or backends (the
constructor does no I/O), ``encode(wav, op) -> Encoded`` and ``decode(Encoded) -> wav`` on
batches ``[B, C, T]`` at the codec's own sample rate, and a real bitstream:
``to_bytes(Encoded) -> bytes`` / ``from_bytes(bytes) -> Encoded``. The harness measures kbps from
the length of those bytes (header included) and records it next to the nominal kbps.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import math
import struct
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.registry import CODECS, UnknownNameError, did_you_mean

BITSTREAM_MAGIC = b"BQ"
BITSTREAM_VERSION = 1
#: version of the batched and chunked coding policy (``bench.pipeline.batching``: canonical end padding,
#: bucketing, windows and stitching); part of every codec's fingerprint, so bump it when that policy
#: changes a value and the cache recomputes
CODING_POLICY_VERSION = "batching-1"


@dataclass(frozen=True)
class OperatingPoint:
    """One explicit setting of a codec: a bitrate, a number of codebooks, a VBR level...

    ``name`` is what users type after ``@`` (``opus@12``, ``dac@4``, ``vrvq@L2.0``).
    ``params`` are codec specific (``{"bitrate_kbps": 12}``, ``{"n_codebooks": 4}``).
    """

    name: str
    nominal_kbps: float
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    kind: str = "cbr"  # "cbr", "vbr" or "lossless"


def _round_up(value: float, step: int) -> int:
    """The smallest multiple of ``step`` that is at least ``value`` (and at least ``step``)."""
    return max(step, int(math.ceil(value / step)) * step)


@dataclass(frozen=True)
class FrameLayout:
    """How a frame-based codec's items are padded, batched and cut into windows (``bench.pipeline.batching``).

    The canonical coding of an item of T samples: zero-pad it at the end to ``padded(T)`` (a multiple of
    ``pad_step``), encode, keep the first ``frames(op, T)`` code frames (the bitstream); to decode, pad the
    codes with the codec's fixed pad code back to ``frames(op, padded(T))``, decode, trim to T. Items of the
    same padded length batch together; the result never depends on which items share a batch.

    An item longer than ``chunk_samples`` is coded in windows of ``window_samples`` (the chunk plus
    ``context_samples`` on each side), keeping each window's centre frames and samples.

    * ``hop_samples``: the frame grid at the codec's rate; every other length is a multiple of it.
    * ``frames_for(op, T)``: code frames the codec's bitstream holds for T samples at ``op``.
    * ``hop_of(op)``: samples per code frame of ``op`` when points run models of different hops (each
      divides ``hop_samples``); None: ``hop_samples`` for every point.
    """

    hop_samples: int
    frames_for: Callable[[OperatingPoint, int], int] = field(compare=False, repr=False)
    pad_step: int
    chunk_samples: int
    context_samples: int
    hop_of: Callable[[OperatingPoint], int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        hop = self.hop_samples
        if hop < 1 or self.pad_step < 1 or self.chunk_samples < 1 or self.context_samples < 0:
            raise ValueError(f"frame layout needs positive lengths, got {self}")
        for name in ("pad_step", "chunk_samples", "context_samples"):
            if getattr(self, name) % hop:
                raise ValueError(f"frame layout: {name}={getattr(self, name)} is not a multiple of the hop {hop}")

    @classmethod
    def default(cls, hop_samples: int, sample_rate_hz: int, frames_for: Callable[[OperatingPoint, int], int], *,
                pad_s: float = 1.0, chunk_s: float = 30.0, context_s: float = 1.0,
                hop_of: Callable[[OperatingPoint], int] | None = None) -> "FrameLayout":
        """Padding to about ``pad_s``, windows of about ``chunk_s`` with ``context_s`` each side, all on the hop grid."""
        return cls(hop_samples, frames_for, _round_up(pad_s * sample_rate_hz, hop_samples),
                   max(hop_samples, int(round(chunk_s * sample_rate_hz / hop_samples)) * hop_samples),
                   _round_up(context_s * sample_rate_hz, hop_samples) if context_s > 0 else 0, hop_of)

    def frames(self, op: OperatingPoint, num_samples: int) -> int:
        """Code frames of ``num_samples`` at ``op`` (the codec's own rule)."""
        return int(self.frames_for(op, num_samples))

    def op_hop(self, op: OperatingPoint) -> int:
        """Samples per code frame at ``op``."""
        return self.hop_samples if self.hop_of is None else int(self.hop_of(op))

    def padded(self, num_samples: int) -> int:
        """The canonical encode length of an item: ``num_samples`` rounded up to a multiple of ``pad_step``."""
        return _round_up(num_samples, self.pad_step)

    @property
    def window_samples(self) -> int:
        """Length of a window of a chunked item: the chunk plus its context on both sides."""
        return self.chunk_samples + 2 * self.context_samples

    def to_dict(self) -> dict[str, int]:
        """The lengths that decide a value, for the codec's fingerprint (the frame rule is the codec's code)."""
        return {"hop_samples": self.hop_samples, "pad_step": self.pad_step, "chunk_samples": self.chunk_samples,
                "context_samples": self.context_samples}


@dataclass
class CodecSpec:
    """What a codec is, known without loading it."""

    name: str
    sample_rate_hz: int
    channels: int
    operating_points: list[OperatingPoint]
    family: str = ""
    frame_rate_hz: float | None = None
    codebook_sizes: list[int] = field(default_factory=list)
    licence: str = ""
    requires: list[str] = field(default_factory=list)
    description: str = ""
    #: names of the operating points that ``--codecs all`` and a bare codec name select (a
    #: representative R-D sweep); ``NAME@*`` selects every point. None = every point.
    sweep: list[str] | None = None

    def op(self, name: str) -> OperatingPoint:
        """The operating point called ``name``; an unknown name raises with a "did you mean"."""
        for point in self.operating_points:
            if point.name == name:
                return point
        names = [p.name for p in self.operating_points]
        raise UnknownNameError(f"{self.name} has no operating point {name!r}.{did_you_mean(name, names)}")


@dataclass
class Encoded:
    """A codec's compressed representation of a batch, before or after the bytes round trip.

    ``num_samples`` is the input length per channel at the codec's rate, so ``decode`` can return
    exactly that many samples. ``payload`` is codec specific (packets, integer code tensors...).
    """

    codec: str
    operating_point: str
    sample_rate_hz: int
    num_channels: int
    num_samples: int
    batch_size: int
    payload: Any


@dataclass(frozen=True)
class BitstreamHeader:
    """The fields every bitstream starts with (see :func:`pack_header`): enough to rebuild an :class:`Encoded`."""

    codec: str
    operating_point: str
    sample_rate_hz: int
    num_channels: int
    num_samples: int
    batch_size: int
    version: int = BITSTREAM_VERSION


class BitstreamError(ValueError):
    """Bytes that are not a valid bitstream for this codec."""


def _pack_str(s: str) -> bytes:
    raw = s.encode("ascii")
    if len(raw) > 255:
        raise ValueError(f"string too long for the header: {s!r}")
    return struct.pack("<B", len(raw)) + raw


def pack_header(h: BitstreamHeader) -> bytes:
    """Small versioned header: magic, version, codec name, operating point, rate, channels, length."""
    return (
        BITSTREAM_MAGIC
        + struct.pack("<B", h.version)
        + _pack_str(h.codec)
        + _pack_str(h.operating_point)
        + struct.pack("<IBIH", h.sample_rate_hz, h.num_channels, h.num_samples, h.batch_size)
    )


def unpack_header(data: bytes) -> tuple[BitstreamHeader, bytes]:
    """Parse a header; returns it and the remaining body. Raises BitstreamError on bad bytes."""
    try:
        if data[:2] != BITSTREAM_MAGIC:
            raise BitstreamError("not a bench bitstream (bad magic)")
        version = data[2]
        if version != BITSTREAM_VERSION:
            raise BitstreamError(f"unsupported bitstream version {version} (this build reads {BITSTREAM_VERSION})")
        pos = 3
        fields = []
        for _ in range(2):
            n = data[pos]
            fields.append(data[pos + 1 : pos + 1 + n].decode("ascii"))
            pos += 1 + n
        sr, ch, ns, bs = struct.unpack_from("<IBIH", data, pos)
        pos += struct.calcsize("<IBIH")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise BitstreamError(f"truncated or corrupt bitstream header: {exc}") from exc
    return BitstreamHeader(fields[0], fields[1], sr, ch, ns, bs, version), data[pos:]


class Codec(ABC):
    """Base class of every codec. Subclasses define ``spec``, ``encode``/``decode`` and the payload packing."""

    #: registry key, used in bitstream headers and cache keys
    name: str = ""
    #: bump when the output changes in a way the adapter's code does not show (a data file, a
    #: backend switch); the code of the adapter's modules and of its network is hashed anyway
    adapter_version: str = "1"
    #: extra modules whose code decides the output, beyond the class's own and its network's
    fingerprint_modules: tuple[str, ...] = ()
    #: installed distributions whose versions decide the output
    fingerprint_packages: tuple[str, ...] = ("numpy", "torch")
    #: the last memoized computation: ((tag, shape, input hash), result), see :meth:`memoized`
    _memo: tuple[Any, Any] | None = None

    def __init__(self, checkpoint: str | None = None) -> None:
        self.checkpoint = checkpoint
        self.device = torch.device("cpu")
        self._loaded = False

    # --- static description -------------------------------------------------------------
    @property
    @abstractmethod
    def spec(self) -> CodecSpec:
        """The static spec (cheap; may read a small JSON card, never weights)."""

    @property
    def checkpoint_hash(self) -> str:
        """Identifies the weights or backend version; part of every cache key."""
        return "none"

    def num_parameters(self) -> int | None:
        """Trainable parameter count for neural codecs; None for reference codecs."""
        return None

    # --- identity -----------------------------------------------------------------------
    def fingerprint_params(self) -> dict[str, Any]:
        """Constructor parameters that decide the output: the instance's plain public attributes.

        A plugin codec that keeps its settings elsewhere overrides this.
        """
        plain = (bool, int, float, str, type(None))
        skip = {"checkpoint"}  # the weights hash stands for the checkpoint
        return {k: v for k, v in sorted(vars(self).items())
                if not k.startswith("_") and k not in skip and isinstance(v, plain)}

    def fingerprint_info(self) -> dict[str, Any]:
        """Everything that decides this codec's output, as plain data (recorded in run manifests).

        The adapter's class, version and code (docstrings ignored), the code of its network's
        modules (after ``load``), its parameters and operating points, the weights or backend
        version (``checkpoint_hash``), the device type, and the versions of the packages it runs on.
        """
        from bench.fingerprint import (
            class_modules,
            package_versions,
            source_fingerprint,
        )

        cls = type(self)
        modules = set(class_modules(cls)) | set(self.fingerprint_modules)
        for net in self._networks():
            modules |= {type(m).__module__ for m in net.modules() if not type(m).__module__.startswith("torch")}
        spec = self.spec
        return {
            "codec": self.name, "adapter": f"{cls.__module__}.{cls.__qualname__}",
            "adapter_version": self.adapter_version, "code": source_fingerprint(modules),
            "weights": self.checkpoint_hash, "device": self.device.type,
            "params": self.fingerprint_params(),
            "spec": {"sample_rate_hz": spec.sample_rate_hz, "channels": spec.channels,
                     "operating_points": [[p.name, p.nominal_kbps, p.kind, p.params] for p in spec.operating_points]},
            "packages": package_versions(self.fingerprint_packages),
            "coding": self.coding_info(),
        }

    def coding_info(self) -> dict[str, Any]:
        """How items are batched and chunked (``bench.pipeline.batching``): the policy version and the layout.

        None as the layout: the codec is coded item by item with its plain ``encode``/``decode``.
        """
        layout = self.frame_layout()
        return {"policy": CODING_POLICY_VERSION, "layout": None if layout is None else layout.to_dict()}

    def _networks(self) -> list[torch.nn.Module]:
        """The loaded networks held by this codec (attributes that are modules, or dicts/lists of them)."""
        nets = []
        for value in vars(self).values():
            values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            nets += [v for v in values if isinstance(v, torch.nn.Module)]
        return nets

    @property
    def fingerprint(self) -> str:
        """Short hash of :meth:`fingerprint_info`: the codec part of every cache key and resume check."""
        from bench.fingerprint import digest

        return digest(self.fingerprint_info(), length=24)

    # --- lifecycle ----------------------------------------------------------------------
    def load(self, device: str | torch.device = "cpu") -> "Codec":
        """Load weights or backends. Idempotent."""
        self.device = torch.device(device)
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def _load(self) -> None:
        """Subclasses load weights/backends here."""

    # --- coding -------------------------------------------------------------------------
    @abstractmethod
    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Compress a batch ``[B, C, T]`` of float audio in [-1, 1] at ``spec.sample_rate_hz``."""

    @abstractmethod
    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Reconstruct ``[B, C, encoded.num_samples]`` float audio."""

    @abstractmethod
    def pack_payload(self, encoded: Encoded) -> bytes:
        """Serialise ``encoded.payload`` (the header is written by ``to_bytes``)."""

    @abstractmethod
    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> Any:
        """Inverse of ``pack_payload``."""

    def to_bytes(self, encoded: Encoded) -> bytes:
        """The real bitstream: versioned header plus :meth:`pack_payload`; its length gives the measured kbps."""
        header = BitstreamHeader(
            encoded.codec, encoded.operating_point, encoded.sample_rate_hz,
            encoded.num_channels, encoded.num_samples, encoded.batch_size,
        )
        return pack_header(header) + self.pack_payload(encoded)

    def from_bytes(self, data: bytes) -> Encoded:
        """Inverse of :meth:`to_bytes`; a bitstream of another codec or a bad header raises BitstreamError."""
        header, body = unpack_header(data)
        if header.codec != self.name:
            raise BitstreamError(f"bitstream is for codec {header.codec!r}, not {self.name!r}")
        payload = self.unpack_payload(body, header)
        return Encoded(header.codec, header.operating_point, header.sample_rate_hz,
                       header.num_channels, header.num_samples, header.batch_size, payload)

    # --- batched and chunked coding (bench.pipeline.batching) ----------------------------------
    def frame_layout(self) -> FrameLayout | None:
        """The codec's :class:`FrameLayout` with this instance's :meth:`set_coding` overrides; None = not batchable.

        A codec that returns None (Opus, MP3, PCM, plugins by default) is coded item by item with its
        plain ``encode``/``decode``; one with a layout must give results that do not depend on the
        batch: nothing in its encoder or decoder may mix the items of a batch.
        """
        layout = self.default_frame_layout()
        overrides = getattr(self, "_coding_overrides", None)
        return dataclasses.replace(layout, **overrides) if layout is not None and overrides else layout

    def default_frame_layout(self) -> FrameLayout | None:
        """The codec's own layout (frame-based neural codecs override this); None = code item by item."""
        return None

    def set_coding(self, **lengths: int) -> None:
        """Override ``pad_step``, ``chunk_samples`` or ``context_samples`` (samples) of this instance's layout.

        The override is part of the fingerprint (``coding``), so values coded with other lengths are
        never served from the cache for these. Tests use it for short windows.
        """
        allowed = {"pad_step", "chunk_samples", "context_samples"}
        unknown = set(lengths) - allowed
        if unknown:
            raise ValueError(f"set_coding takes {sorted(allowed)}, not {sorted(unknown)}")
        overrides = {**getattr(self, "_coding_overrides", {}), **{k: int(v) for k, v in lengths.items()}}
        layout = self.default_frame_layout()
        if layout is None:
            raise ValueError(f"codec {self.name!r} is not batchable: it has no frame layout to change")
        dataclasses.replace(layout, **overrides)  # validates (multiples of the hop)
        self._coding_overrides = overrides

    def encode_group(self, op: OperatingPoint) -> str | None:
        """Points with the same group share one computation per input (see :meth:`encode_shared`); None = none."""
        return None

    def encode_shared(self, wav: torch.Tensor, op: OperatingPoint) -> None:
        """Compute (and memoize) what the points of ``op``'s :meth:`encode_group` share on ``wav``.

        After it, ``encode(wav, p)`` for every point p of the group only slices the result. The batching
        layer times this call apart and splits its time among the group's points. Default: nothing.
        """

    def clear_memo(self) -> None:
        """Forget the last memoized computation (see :meth:`memoized`)."""
        self._memo = None

    def payload_pad_value(self, key: str | None, payload: Any) -> int:
        """The fixed value that pads a payload tensor (``key`` in a dict payload, else None) past its frames."""
        return 0

    def split_payload(self, encoded: Encoded, index: int, start: int, stop: int) -> Any:
        """Batch item ``index``'s payload with only code frames ``start:stop``, as a batch of one.

        The default handles a tensor ``[B, ..., frames]`` or a dict of them (frames last); a codec with
        another payload overrides this, :meth:`concat_payloads` and :meth:`merge_payloads`.
        """
        return _map_tensors(encoded.payload, lambda _, t: t[index : index + 1, ..., start:stop].clone())

    def concat_payloads(self, payloads: list[Any]) -> Any:
        """Batch-of-one payloads of consecutive frame ranges of one item joined along the frames."""
        first = payloads[0]
        if isinstance(first, dict):
            return {k: torch.cat([p[k] for p in payloads], dim=-1) for k in first}
        return torch.cat(payloads, dim=-1)

    def merge_payloads(self, payloads: list[Any], frames: int) -> Any:
        """Batch-of-one payloads stacked into one batch, each padded with :meth:`payload_pad_value` to ``frames``."""
        def pad(payload: Any) -> Any:
            def one(key: str | None, t: torch.Tensor) -> torch.Tensor:
                short = frames - int(t.shape[-1])
                if short < 0:
                    raise ValueError(f"{self.name}: a payload of {t.shape[-1]} frames does not fit {frames}")
                value = self.payload_pad_value(key, payload)
                return torch.nn.functional.pad(t, (0, short), value=value) if short else t
            return _map_tensors(payload, one)

        padded = [pad(p) for p in payloads]
        first = padded[0]
        if isinstance(first, dict):
            return {k: torch.cat([p[k] for p in padded], dim=0) for k in first}
        return torch.cat(padded, dim=0)

    # --- helpers ------------------------------------------------------------------------
    def memoized(self, tag: str, wav: torch.Tensor, compute: Callable[[], Any]) -> Any:
        """Reuse the last result of ``compute`` for the same input audio and ``tag``.

        The runner codes one item at every operating point in a row; an RVQ codec encodes at full
        depth once and slices the first n codebooks for each point (identical codes, since a
        residual stage never depends on the stages after it).
        """
        key = (tag, tuple(wav.shape), hashlib.sha1(wav.detach().float().cpu().numpy().tobytes()).hexdigest())
        memo = getattr(self, "_memo", None)
        if memo is None or memo[0] != key:
            memo = (key, compute())
            self._memo = memo
        return memo[1]

    def resolve_op(self, operating_point: OperatingPoint | str) -> OperatingPoint:
        """The operating point itself, or the spec's point of that name."""
        if isinstance(operating_point, OperatingPoint):
            return operating_point
        return self.spec.op(str(operating_point))

    @staticmethod
    def fit_decoded(audio: torch.Tensor, num_samples: int) -> torch.Tensor:
        """A decode trimmed or zero-padded to ``num_samples`` (models that return whole frames), as float32 on CPU."""
        audio = audio[..., :num_samples]
        short = num_samples - audio.shape[-1]
        if short > 0:
            audio = torch.nn.functional.pad(audio, (0, short))
        return audio.float().cpu()

    @staticmethod
    def check_wav(wav: torch.Tensor, channels: int | None = None) -> torch.Tensor:
        """Return ``wav`` unchanged if it is finite ``[B, C, T]`` (with ``channels`` channels if given); else raise."""
        if wav.dim() != 3:
            raise ValueError(f"expected audio of shape [B, C, T], got {tuple(wav.shape)}")
        if channels is not None and wav.shape[1] != channels:
            raise ValueError(f"codec expects {channels} channel(s), got {wav.shape[1]}")
        if not torch.isfinite(wav).all():
            raise ValueError("audio contains NaN or Inf samples")
        return wav


def _map_tensors(payload: Any, fn: Callable[[str | None, torch.Tensor], torch.Tensor]) -> Any:
    """``fn(key, tensor)`` applied to a tensor payload (key None) or to every tensor of a dict payload."""
    if isinstance(payload, torch.Tensor):
        return fn(None, payload)
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {k: fn(k, v) for k, v in payload.items()}
    raise TypeError(f"payload of type {type(payload).__name__}: the codec must override the payload "
                    "split/concat/merge methods to be batched")


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file read in ``chunk``-byte blocks (the runner hashes input audio with it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- selection: "all", "opus", "opus@12", "op*", "dac:PATH@4" ------------------------------------

CodecFactory = Callable[..., Codec]


def register_codec(name: str, factory: CodecFactory, *, in_all: bool = True) -> CodecFactory:
    """Register a codec class (or factory taking ``checkpoint=``). ``in_all=False`` keeps it out of ``all``."""
    factory.in_all = in_all  # type: ignore[attr-defined]
    return CODECS.register(name, factory)


@dataclass
class Selection:
    """One (codec instance, operating point) pair chosen on the command line."""

    key: str  # "opus" or "dac:/path/to/ckpt"
    codec: Codec
    op: OperatingPoint

    @property
    def label(self) -> str:
        """``key@op``, how reports and logs name this selection."""
        return f"{self.key}@{self.op.name}"


def _split_token(token: str) -> tuple[str, str | None, str | None]:
    """'name[:path][@op]' -> (name, path, op)."""
    op = None
    if "@" in token:
        head, tail = token.rsplit("@", 1)
        if "/" not in tail and "\\" not in tail:
            token, op = head, tail
    path = None
    if ":" in token:
        token, path = token.split(":", 1)
    return token, path, op


def _match_ops(codec: Codec, op_pattern: str | None) -> list[OperatingPoint]:
    ops = codec.spec.operating_points
    if op_pattern is None:
        sweep = codec.spec.sweep
        return [p for p in ops if p.name in sweep] if sweep else list(ops)
    pattern = op_pattern.removesuffix("kbps")
    chosen = [p for p in ops if fnmatch.fnmatchcase(p.name, pattern)]
    if not chosen:
        names = [p.name for p in ops]
        raise UnknownNameError(
            f"codec {codec.name!r} has no operating point {op_pattern!r}.{did_you_mean(pattern, names)}"
        )
    return chosen


#: the extra of ``pyproject.toml`` that installs a backend distribution (the hint of a skipped codec)
@dataclass(frozen=True)
class Availability:
    """Whether a registered codec can run here: its backend packages and its weights, each with a reason if not."""

    backend: str | None = None  # None = installed, else why not
    weights: str | None = None  # None = available, else why not

    @property
    def ok(self) -> bool:
        """True when both the backend and the weights are there."""
        return self.backend is None and self.weights is None

    @property
    def reason(self) -> str:
        """The first thing missing (backend before weights), '' when available."""
        return self.backend or self.weights or ""


@dataclass(frozen=True)
class SkippedCodec:
    """A codec that ``--codecs all`` (or a glob) left out, with the one reason why."""

    name: str
    reason: str

    def __str__(self) -> str:
        """``name (reason)``, as the run's note lists it."""
        return f"{self.name} ({self.reason})"


def _missing_packages(factory: CodecFactory) -> list[str]:
    """The packages a codec runs on (``fingerprint_packages``) that are not installed."""
    from bench.deps import missing

    return missing(getattr(factory, "fingerprint_packages", ()))


def _backend_reason(factory: CodecFactory) -> str | None:
    """Why the backend is missing (which extra to install), or None when every package is installed."""
    from bench.deps import install_hint

    absent = _missing_packages(factory)
    return f"extra not installed: {', '.join(absent)}; {install_hint(absent)}" if absent else None


def _weights_reason(factory: CodecFactory, checkpoint: str | None = None) -> str | None:
    """Why the weights are missing, or None: the default hub id's cache entry, else whether the spec builds."""
    hub_id = getattr(factory, "hub_id", "")
    if checkpoint is None and isinstance(hub_id, str) and hub_id:
        from bench.hub import cached_snapshot, fetch_hint

        if cached_snapshot(hub_id) is None:
            return f"weights {hub_id!r} not in the local Hugging Face cache: {fetch_hint(hub_id)}"
        return None
    try:
        factory(checkpoint=checkpoint).spec
    except Exception as exc:  # noqa: BLE001 - any failure to describe itself means the weights are not usable
        return f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
    return None


def codec_availability(name: str, checkpoint: str | None = None) -> Availability:
    """Whether the registered codec ``name`` has its backend installed and its weights available locally (no I/O beyond the cache)."""
    factory = CODECS.get(name)
    return Availability(_backend_reason(factory), _weights_reason(factory, checkpoint))


def _matched_names(name: str, names: list[str], skipped: list[SkippedCodec]) -> list[str]:
    """The codec names a token's name part selects; ``all`` checks availability and records what it leaves out."""
    if name == "all":
        matched = []
        for n in names:
            availability = codec_availability(n)
            if availability.ok:
                if getattr(CODECS.get(n), "in_all", True):
                    matched.append(n)
            elif not any(s.name == n for s in skipped):
                skipped.append(SkippedCodec(n, availability.reason))
        return matched
    if any(ch in name for ch in "*?["):
        matched = [n for n in names if fnmatch.fnmatchcase(n, name)]
        if not matched:
            raise UnknownNameError(f"No codec matches {name!r}.{did_you_mean(name, names)}")
        return matched
    CODECS.get(name)  # raises with "did you mean"
    return [name]


def _skip(codec_name: str, exc: Exception, skipped: list[SkippedCodec] | None) -> None:
    """Record (or, without a list to fill, warn about) a codec an implicit selection could not construct."""
    if skipped is None:
        warnings.warn(f"skipping codec {codec_name!r}: {exc}", stacklevel=3)
    elif not any(s.name == codec_name for s in skipped):
        skipped.append(SkippedCodec(codec_name, str(exc) or type(exc).__name__))


def select_codecs(spec: str, *, skipped: list[SkippedCodec] | None = None) -> list[Selection]:
    """Parse ``--codecs``: comma-separated names, globs, ``@op`` suffixes and ``name:PATH``.

    ``all`` and globs leave out codecs that cannot run here; with ``skipped`` given, each is appended
    to it with one reason (no weights, extra not installed), else it is only warned about.
    """
    names = CODECS.names()
    out: list[Selection] = []
    seen: set[tuple[str, str]] = set()
    instances: dict[str, Codec] = {}
    record: list[SkippedCodec] = [] if skipped is None else skipped
    for raw in [t.strip() for t in spec.split(",") if t.strip()]:
        name, path, op_pattern = _split_token(raw)
        before = len(record)
        matched = _matched_names(name, names, record)
        if skipped is None:
            for s in record[before:]:
                warnings.warn(f"skipping codec {s.name!r}: {s.reason}", stacklevel=2)
        implicit = (len(matched) > 1 or name != matched[0]) if matched else True
        for codec_name in matched:
            key = f"{codec_name}:{path}" if path else codec_name
            try:
                if key not in instances:
                    instances[key] = CODECS.get(codec_name)(checkpoint=path)
                codec = instances[key]
                ops = _match_ops(codec, op_pattern)
            except UnknownNameError:
                if implicit:
                    continue
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. a checkpoint that is not installed
                if not implicit:
                    raise
                _skip(codec_name, exc, skipped)
                continue
            for op in ops:
                if (key, op.name) not in seen:
                    seen.add((key, op.name))
                    out.append(Selection(key, codec, op))
    if not out:
        raise UnknownNameError(f"--codecs {spec!r} selects nothing. Known: {', '.join(names)}.")
    return out
