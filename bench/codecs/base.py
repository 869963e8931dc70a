"""The Codec interface, operating points, the bitstream header and codec selection.

A codec has a static :class:`CodecSpec`, a ``load()`` that fetches weights or backends (the
constructor does no I/O), ``encode(wav, op) -> Encoded`` and ``decode(Encoded) -> wav`` on
batches ``[B, C, T]`` at the codec's own sample rate, and a real bitstream:
``to_bytes(Encoded) -> bytes`` / ``from_bytes(bytes) -> Encoded``. The harness measures kbps from
the length of those bytes (header included) and records it next to the nominal kbps.
"""

from __future__ import annotations

import fnmatch
import hashlib
import struct
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.registry import CODECS, UnknownNameError, did_you_mean

BITSTREAM_MAGIC = b"BQ"
BITSTREAM_VERSION = 1


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
        }

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
