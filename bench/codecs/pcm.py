"""16-bit PCM: the lossless upper anchor of every rate-distortion plot.

Quantises float audio to 16-bit integers (round to nearest, clipped to [-32768, 32767], scale
32768 as WAV readers use) and stores them little-endian, batch-major, channel-major. The round
trip error is at most half an LSB for input inside [-1, 1 - 2^-15]; louder samples are clipped,
as a WAV file would clip them. It codes each item at the item's own rate and channel count (the
runner asks :meth:`Pcm16Codec.for_input` for that instance), so nothing is resampled and its rate is
exactly rate x 16 x channels (384 kbps for 24 kHz mono, 1536 kbps for 48 kHz stereo) plus the bench
header: the SI-SDR of its round trip is the 16-bit quantisation limit. Without an input (``bench ls``)
it describes itself at 44.1 kHz mono (705.6 kbps).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.codecs.base import BitstreamError, BitstreamHeader, Codec, CodecSpec, Encoded, OperatingPoint, register_codec

SAMPLE_RATE_HZ = 44_100  # the rate it describes itself at before it sees an input
BITS_PER_SAMPLE = 16
FULL_SCALE = 32768.0


class Pcm16Codec(Codec):
    """16-bit PCM: lossless anchor (error <= 0.5 LSB), no backend."""

    name = "pcm16"
    #: codes at the input's own rate and channels (see :meth:`for_input`); the runner never resamples for it
    follows_input = True

    def __init__(self, checkpoint: str | None = None, sample_rate_hz: int = SAMPLE_RATE_HZ, channels: int = 1) -> None:
        super().__init__(checkpoint)
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = int(channels)

    def for_input(self, sample_rate_hz: int, channels: int) -> "Pcm16Codec":
        """This codec (a copy: a subclass keeps its type and settings) at an input's own rate and channel count."""
        import copy

        other = copy.copy(self)
        other.sample_rate_hz, other.channels = int(sample_rate_hz), int(channels)
        return other

    @property
    def spec(self) -> CodecSpec:
        """One lossless 16-bit operating point at this instance's rate and channels (rate x 16 x channels kbps)."""
        kbps = self.sample_rate_hz * BITS_PER_SAMPLE * self.channels / 1000
        return CodecSpec(
            name=self.name,
            sample_rate_hz=self.sample_rate_hz,
            channels=self.channels,
            operating_points=[OperatingPoint("16bit", kbps, {"bits": BITS_PER_SAMPLE}, "lossless")],
            family="reference",
            frame_rate_hz=float(self.sample_rate_hz),
            licence="public domain (no code beyond numpy)",
            requires=[],
            description="16-bit linear PCM at each item's own rate and channels: the lossless upper anchor.",
        )

    @property
    def checkpoint_hash(self) -> str:
        """A fixed format tag: there are no weights or backend versions."""
        return "pcm16-le-v1"

    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Quantise ``[B, C, T]`` to int16 (round to nearest, clipped); the payload is that ``<i2`` array."""
        op = self.resolve_op(operating_point)
        wav = self.check_wav(wav)
        x = wav.detach().to("cpu", torch.float64).numpy()
        ints = np.clip(np.rint(x * FULL_SCALE), -32768, 32767).astype("<i2")
        b, c, t = ints.shape
        return Encoded(self.name, op.name, self.sample_rate_hz, c, t, b, ints)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Float32 ``[B, C, T]`` from the int16 payload (divided by 32768)."""
        ints = np.asarray(encoded.payload)
        expected = (encoded.batch_size, encoded.num_channels, encoded.num_samples)
        if ints.shape != expected:
            raise BitstreamError(f"pcm16: payload has shape {ints.shape}, header says {expected}")
        return torch.from_numpy(ints.astype(np.float32) / FULL_SCALE).to(self.device)

    def pack_payload(self, encoded: Encoded) -> bytes:
        """The samples as little-endian int16, batch-major then channel-major."""
        return np.ascontiguousarray(encoded.payload, dtype="<i2").tobytes()

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> np.ndarray:
        """The int16 array ``[B, C, T]`` back from the body; a wrong rate or length raises BitstreamError."""
        if header.sample_rate_hz != self.sample_rate_hz:
            raise BitstreamError(f"pcm16: header says {header.sample_rate_hz} Hz, this instance codes "
                                 f"{self.sample_rate_hz} Hz (use for_input)")
        self.spec.op(header.operating_point)
        shape = (header.batch_size, header.num_channels, header.num_samples)
        expected_bytes = 2 * header.batch_size * header.num_channels * header.num_samples
        if len(body) != expected_bytes:
            raise BitstreamError(
                f"pcm16: body has {len(body)} bytes, header {shape} needs {expected_bytes} (truncated or corrupt)"
            )
        return np.frombuffer(body, dtype="<i2").reshape(shape).copy()


register_codec("pcm16", Pcm16Codec)
