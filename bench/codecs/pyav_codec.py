"""Shared PyAV (FFmpeg) machinery for the reference codecs: encode, decode, delay alignment, framing.

The reference codecs (``opus``, ``mp3``) run the real encoders that ship inside the PyAV wheel
(libopus, libmp3lame) and keep their real compressed packets as the bitstream. What this module adds:

* **Encoding** one ``[C, T]`` signal into packets with a fresh encoder context (no state leaks
  between batch items), feeding whole frames and flushing the encoder at the end.
* **Alignment.** Every such codec delays its output: Opus by its pre-skip (the encoder's lookahead,
  312 samples at 48 kHz, written by the encoder into its ``OpusHead``), MP3 by LAME's encoder delay
  plus the decoder's synthesis delay (576 + 529 samples). The encoder also pads the last frame. The
  delay is stored in the bitstream (a varint per stream, as Ogg Opus stores pre-skip in its header), and
  ``decode`` drops that many leading samples and cuts the end so the output has exactly the input's
  length and lines up with it sample for sample. A codec whose real delay differs slightly from
  the nominal one by mode (Opus's SILK modes) sets ``delay_search_samples``: the encoder then
  decodes its own packets and stores the best-aligned delay near the nominal one.
* **Framing.** After the bench header the body holds, per batch item: ``varint(delay_samples)``,
  ``varint(num_packets)`` and then either each packet as ``varint(length) + bytes`` (Opus packets
  do not carry their own length) or, for self-delimiting streams (MP3 frames carry a sync word and
  their size), ``varint(total_length) + the raw concatenated frames`` that FFmpeg's parser splits
  again. Everything is counted in measured kbps.
* **Version pinning.** :func:`backend_version` reads the backend library's own version string
  (``opus_get_version_string``, ``get_lame_version``) from the library PyAV loaded, so a cache key
  built on it changes when the encoder changes.

``av`` is imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from bench.codecs.base import BitstreamError, BitstreamHeader, Codec, Encoded, OperatingPoint

if TYPE_CHECKING:
    from av.audio.codeccontext import AudioCodecContext
    from av.audio.frame import AudioFrame

# --- varints (unsigned LEB128) ---------------------------------------------------------------


def varint_bytes(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, high bit set on every byte but the last (1 byte below 128)."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; returns ``(value, next_pos)``. Raises BitstreamError when truncated."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise BitstreamError("truncated bitstream: varint runs past the end of the data")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 56:
            raise BitstreamError("corrupt bitstream: varint longer than 8 bytes")


def read_exact(data: bytes | memoryview, pos: int, n: int, what: str) -> tuple[bytes, int]:
    """Take ``n`` bytes at ``pos`` or raise BitstreamError naming ``what``."""
    if pos + n > len(data):
        raise BitstreamError(
            f"truncated bitstream: {what} needs {n} bytes at offset {pos}, only {len(data) - pos} left"
        )
    return bytes(data[pos : pos + n]), pos + n


# --- payload --------------------------------------------------------------------------------


@dataclass
class PacketStream:
    """One batch item's compressed stream: the codec packets and the samples to drop at the start."""

    delay_samples: int
    packets: list[bytes]

    @property
    def num_bytes(self) -> int:
        """Total size of the packets, without any framing."""
        return sum(len(p) for p in self.packets)


# --- backend versions -----------------------------------------------------------------------


def _loaded_library_paths(fragment: str) -> list[str]:
    """Paths of already mapped shared objects whose file name contains ``fragment`` (Linux)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    paths = {ln.split()[-1] for ln in lines if "/" in ln and fragment in ln.rsplit("/", 1)[-1]}
    return sorted(paths)


@lru_cache(maxsize=None)
def backend_version(lib_fragment: str, version_function: str) -> str:
    """Version string of a backend library linked into PyAV's FFmpeg, plus the PyAV/libavcodec versions.

    ``lib_fragment`` is part of the shared object's name (``"libopus"``, ``"libmp3lame"``) and
    ``version_function`` the C function returning its version string. The library is looked up among
    the libraries PyAV has loaded (the wheel bundles its own copies), then on the system path.
    When neither works the string still carries PyAV's and libavcodec's versions.
    """
    import ctypes
    import ctypes.util

    import av

    candidates = _loaded_library_paths(lib_fragment)
    system = ctypes.util.find_library(lib_fragment.removeprefix("lib"))
    if system:
        candidates.append(system)
    lib_version = f"{lib_fragment} unknown"
    for path in candidates:
        try:
            fn = getattr(ctypes.CDLL(path), version_function)
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        raw = fn()
        if raw:
            text = raw.decode("ascii", "replace")
            lib_version = text if text.lower().startswith(lib_fragment.lower()) else f"{lib_fragment} {text}"
            break
    avcodec = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
    return f"{lib_version}; av {av.__version__}; libavcodec {avcodec}"


# --- sample conversion ----------------------------------------------------------------------


def frame_to_float(frame: AudioFrame, channels: int) -> np.ndarray:
    """A decoded PyAV AudioFrame as float32 ``[C, n]`` in [-1, 1], whatever its sample format."""
    arr = frame.to_ndarray()
    if frame.format.is_planar:
        arr = arr.reshape(channels, -1)
    else:
        arr = arr.reshape(-1, channels).T
    name = frame.format.name
    if name.startswith("s16"):
        return arr.astype(np.float32) / 32768.0
    if name.startswith("s32"):
        return arr.astype(np.float32) / 2147483648.0
    return arr.astype(np.float32, copy=False)


def _float_to_frame(chunk: np.ndarray, sample_format: str, layout: str, sample_rate_hz: int, pts: int) -> AudioFrame:
    """float32 ``[C, n]`` -> AudioFrame in ``sample_format`` ("flt"/"fltp")."""
    import av

    if sample_format == "fltp":
        data = np.ascontiguousarray(chunk, dtype=np.float32)
    elif sample_format == "flt":
        data = np.ascontiguousarray(chunk.T.reshape(1, -1), dtype=np.float32)
    else:
        raise ValueError(f"unsupported encoder input format {sample_format!r} (use 'flt' or 'fltp')")
    frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout)
    frame.sample_rate = sample_rate_hz
    frame.pts = pts
    frame.time_base = Fraction(1, sample_rate_hz)
    return frame


def _layout(channels: int) -> str:
    """FFmpeg's channel layout name for 1 or 2 channels."""
    if channels == 1:
        return "mono"
    if channels == 2:
        return "stereo"
    raise ValueError(f"PyAV reference codecs support 1 or 2 channels, got {channels}")


# --- encode / decode one stream ---------------------------------------------------------------


def _audio_context(codec_name: str, mode: Literal["r", "w"]) -> AudioCodecContext:
    """A fresh FFmpeg codec context for ``codec_name`` (``"w"``: encoder, ``"r"``: decoder); audio codecs only."""
    import av
    from av.audio.codeccontext import AudioCodecContext

    ctx = av.CodecContext.create(codec_name, mode)
    if not isinstance(ctx, AudioCodecContext):
        raise ValueError(f"{codec_name!r} is not an FFmpeg audio codec")
    return ctx


def encode_stream(
    encoder_name: str,
    samples: np.ndarray,
    sample_rate_hz: int,
    bit_rate_bps: int,
    options: dict[str, str],
    sample_format: str,
) -> tuple[list[bytes], bytes]:
    """Encode float32 ``[C, T]`` with a fresh encoder; returns ``(packets, extradata)``.

    Input is fed in whole frames (the last one zero padded, and at least one frame even for a
    1-sample clip); flushing the encoder then emits the frames that cover its lookahead.
    """
    channels = samples.shape[0]
    ctx = _audio_context(encoder_name, "w")
    ctx.sample_rate = sample_rate_hz
    ctx.layout = _layout(channels)
    ctx.format = sample_format
    ctx.bit_rate = int(bit_rate_bps)
    ctx.time_base = Fraction(1, sample_rate_hz)
    ctx.options = dict(options)
    ctx.open()
    frame_size = ctx.frame_size
    if not frame_size:
        raise RuntimeError(f"{encoder_name}: encoder reports no fixed frame size")
    num_samples = samples.shape[-1]
    num_frames = max(1, -(-num_samples // frame_size))
    padded = np.zeros((channels, num_frames * frame_size), dtype=np.float32)
    padded[:, :num_samples] = samples
    packets: list[bytes] = []
    layout = _layout(channels)
    for i in range(num_frames):
        chunk = padded[:, i * frame_size : (i + 1) * frame_size]
        frame = _float_to_frame(chunk, sample_format, layout, sample_rate_hz, pts=i * frame_size)
        packets.extend(bytes(p) for p in ctx.encode(frame))
    packets.extend(bytes(p) for p in ctx.encode(None))
    extradata = bytes(ctx.extradata or b"")
    return packets, extradata


def decode_packets(
    decoder_name: str,
    packets: list[bytes],
    sample_rate_hz: int,
    channels: int,
    options: dict[str, str] | None = None,
) -> np.ndarray:
    """Decode packets with a fresh decoder into float32 ``[C, N]``. FFmpeg errors become BitstreamError."""
    import av

    ctx = _audio_context(decoder_name, "r")
    ctx.sample_rate = sample_rate_hz
    ctx.layout = _layout(channels)
    if options:
        ctx.options = dict(options)
    chunks: list[np.ndarray] = []
    try:
        for data in packets:
            for frame in ctx.decode(av.Packet(data)):
                chunks.append(frame_to_float(frame, channels))
        for frame in ctx.decode(None):
            chunks.append(frame_to_float(frame, channels))
    except av.FFmpegError as exc:
        raise BitstreamError(f"{decoder_name}: cannot decode packet ({exc})") from exc
    if not chunks:
        return np.zeros((channels, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=1)


def align(decoded: np.ndarray, delay_samples: int, num_samples: int, what: str) -> np.ndarray:
    """Drop the codec delay and cut to ``num_samples``; a stream too short for that is corrupt."""
    needed = delay_samples + num_samples
    if decoded.shape[-1] < needed:
        raise BitstreamError(
            f"{what}: decoded {decoded.shape[-1]} samples, need {needed} "
            f"(delay {delay_samples} + length {num_samples}); the bitstream is truncated or corrupt"
        )
    return decoded[:, delay_samples:needed]


def refine_delay(
    reference: np.ndarray, decoded: np.ndarray, nominal_delay: int, window: int, min_correlation: float = 0.2
) -> int:
    """The delay in ``nominal_delay +- window`` at which ``decoded`` best matches ``reference``.

    Normalised cross-correlation over all channels, evaluated only at the few candidate lags.
    Falls back to ``nominal_delay`` for silent input or when no lag correlates at least
    ``min_correlation`` (noise coded parametrically keeps no waveform to align on).
    """
    num_samples = reference.shape[-1]
    ref_energy = float(np.sum(reference.astype(np.float64) ** 2))
    if ref_energy <= 1e-12 or window <= 0:
        return nominal_delay
    best_delay, best_corr = nominal_delay, -np.inf
    for delay in range(max(0, nominal_delay - window), nominal_delay + window + 1):
        if delay + num_samples > decoded.shape[-1]:
            break
        seg = decoded[:, delay : delay + num_samples].astype(np.float64)
        energy = float(np.sum(seg**2))
        if energy <= 1e-12:
            continue
        corr = float(np.sum(seg * reference)) / np.sqrt(energy * ref_energy)
        if corr > best_corr:
            best_delay, best_corr = delay, corr
    return best_delay if best_corr >= min_correlation else nominal_delay


# --- the base class ---------------------------------------------------------------------------


class PyAVCodec(Codec):
    """A reference codec run through PyAV: subclasses name the encoder/decoder and the settings.

    Subclasses set ``encoder_name``, ``decoder_name``, ``encoder_sample_format``,
    ``self_delimiting`` (packets carry their own length, e.g. MP3 frames) and implement
    :meth:`encoder_settings` (bit rate and FFmpeg options for an operating point) and
    :meth:`delay_samples` (leading samples to drop, given the encoder's extradata).
    Payload: ``list[PacketStream]``, one per batch item (channels travel together in one stream).
    """

    encoder_name: str = ""
    decoder_name: str = ""
    encoder_sample_format: str = "flt"
    decoder_options: dict[str, str] = {}
    self_delimiting: bool = False
    #: if > 0, the encoder decodes its own packets and stores the delay within +- this many samples
    #: of the nominal one that best aligns output and input (see the subclass for why)
    delay_search_samples: int = 0
    #: (library file name fragment, C function returning its version) for :attr:`checkpoint_hash`
    backend_library: tuple[str, str] = ("", "")
    fingerprint_packages = ("numpy", "torch", "av")

    # --- subclass hooks -----------------------------------------------------------------
    @abstractmethod
    def encoder_settings(self, op: OperatingPoint) -> tuple[int, dict[str, str]]:
        """``(bit_rate_bps, ffmpeg_options)`` for an operating point."""

    @abstractmethod
    def delay_samples(self, extradata: bytes) -> int:
        """Samples the decoded stream lags the input by (encoder lookahead + decoder delay)."""

    # --- Codec interface ----------------------------------------------------------------
    @property
    def checkpoint_hash(self) -> str:
        """The backend library's own version string plus PyAV's and libavcodec's (see :func:`backend_version`)."""
        lib, fn = self.backend_library
        return backend_version(lib, fn)

    def _load(self) -> None:
        """Check that this PyAV build has the encoder and decoder; there is nothing else to load."""
        import av

        available = av.codecs_available
        missing = [n for n in (self.encoder_name, self.decoder_name) if n not in available]
        if missing:
            raise RuntimeError(
                f"codec {self.name!r} needs FFmpeg codec(s) {missing}, which this PyAV build lacks "
                f"(PyAV {av.__version__}); install the official `av` wheel"
            )

    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """One fresh encoder per batch item; the payload is a ``list[PacketStream]`` with each item's delay."""
        op = self.resolve_op(operating_point)
        spec = self.spec
        wav = self.check_wav(wav, spec.channels)
        self.load()
        bit_rate_bps, options = self.encoder_settings(op)
        x = wav.detach().to("cpu", torch.float32).numpy()
        streams = []
        for item in x:
            packets, extradata = encode_stream(
                self.encoder_name, item, spec.sample_rate_hz, bit_rate_bps, options, self.encoder_sample_format
            )
            delay = self.delay_samples(extradata)
            if self.delay_search_samples > 0:
                decoded = decode_packets(
                    self.decoder_name, packets, spec.sample_rate_hz, item.shape[0], self.decoder_options
                )
                delay = refine_delay(item, decoded, delay, self.delay_search_samples)
            streams.append(PacketStream(delay, packets))
        return Encoded(self.name, op.name, spec.sample_rate_hz, wav.shape[1], wav.shape[2], wav.shape[0], streams)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Decode each stream, drop its delay and cut to ``num_samples``: ``[B, C, num_samples]`` float32."""
        spec = self.spec
        if encoded.sample_rate_hz != spec.sample_rate_hz:
            raise BitstreamError(
                f"{self.name}: bitstream is at {encoded.sample_rate_hz} Hz, this codec runs at {spec.sample_rate_hz} Hz"
            )
        streams: list[PacketStream] = encoded.payload
        if len(streams) != encoded.batch_size:
            raise BitstreamError(f"{self.name}: {len(streams)} streams for a batch of {encoded.batch_size}")
        self.load()
        out = []
        for b, stream in enumerate(streams):
            pcm = decode_packets(
                self.decoder_name, stream.packets, spec.sample_rate_hz, encoded.num_channels, self.decoder_options
            )
            out.append(align(pcm, stream.delay_samples, encoded.num_samples, f"{self.name} item {b}"))
        if not out:
            return torch.zeros(0, encoded.num_channels, encoded.num_samples)
        return torch.from_numpy(np.stack(out)).to(self.device)

    def pack_payload(self, encoded: Encoded) -> bytes:
        """Per item: varint delay, varint packet count, then length-prefixed packets (or one blob if self-delimiting)."""
        body = bytearray()
        for stream in encoded.payload:
            body += varint_bytes(stream.delay_samples)
            body += varint_bytes(len(stream.packets))
            if self.self_delimiting:
                body += varint_bytes(stream.num_bytes)
                for packet in stream.packets:
                    body += packet
            else:
                for packet in stream.packets:
                    body += varint_bytes(len(packet))
                    body += packet
        return bytes(body)

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> list[PacketStream]:
        """Inverse of :meth:`pack_payload`; truncation, trailing bytes or a bad header raise BitstreamError."""
        spec = self.spec
        if header.sample_rate_hz != spec.sample_rate_hz:
            raise BitstreamError(
                f"{self.name}: header says {header.sample_rate_hz} Hz, this codec runs at {spec.sample_rate_hz} Hz"
            )
        if header.num_channels not in (1, 2):
            raise BitstreamError(f"{self.name}: header says {header.num_channels} channels (1 or 2 allowed)")
        spec.op(header.operating_point)  # unknown operating point -> UnknownNameError (a KeyError)
        view = memoryview(body)
        pos = 0
        streams = []
        for b in range(header.batch_size):
            delay, pos = read_varint(view, pos)
            count, pos = read_varint(view, pos)
            if self.self_delimiting:
                total, pos = read_varint(view, pos)
                raw, pos = read_exact(view, pos, total, f"item {b} frames")
                packets = self._split_frames(raw, b)
                if len(packets) != count:
                    raise BitstreamError(
                        f"{self.name}: item {b} should hold {count} frames, its bytes parse into {len(packets)}"
                    )
            else:
                packets = []
                for k in range(count):
                    size, pos = read_varint(view, pos)
                    packet, pos = read_exact(view, pos, size, f"item {b} packet {k}")
                    packets.append(packet)
            streams.append(PacketStream(delay, packets))
        if pos != len(body):
            raise BitstreamError(f"{self.name}: {len(body) - pos} unexpected trailing bytes after the last stream")
        return streams

    def _split_frames(self, raw: bytes, item: int) -> list[bytes]:
        """Split a self-delimiting stream into frames with FFmpeg's parser; every byte must land in a frame."""
        import av

        ctx = _audio_context(self.decoder_name, "r")
        try:
            packets = [bytes(p) for p in ctx.parse(raw)] + [bytes(p) for p in ctx.parse(None)]
        except av.FFmpegError as exc:
            raise BitstreamError(f"{self.name}: item {item} frames do not parse ({exc})") from exc
        if sum(len(p) for p in packets) != len(raw):
            raise BitstreamError(f"{self.name}: item {item} holds bytes that are not whole {self.decoder_name} frames")
        return packets
