"""Opus (libopus through PyAV): the reference speech/audio codec a user would pick instead.

Settings, and why:

* 48 kHz mono (Opus's native rate; the harness resamples to it and back), 20 ms frames,
  ``application=audio`` (the general-purpose mode, not the VoIP speech tuning), complexity 10.
* **Hard CBR** (``vbr=off``). Every packet then has the same size, so the measured bitrate tracks
  the nominal one exactly, on speech with pauses as on music. libopus's (constrained) VBR
  overshoots its target on speech by up to ~10% at 16 kbps (measured on a LibriVox clip), which
  would make ``opus@16`` not a 16 kbps point.
* **The nominal kbps is the whole bitstream.** Opus packets do not carry their own length, so each
  is stored behind a 1-byte varint length (see ``pyav_codec``). That costs 8 bits x 50 packets/s =
  0.4 kbps, which we take from the encoder's budget: ``opus@6`` runs libopus at 5.6 kbps and
  14-byte packets, and with its length bytes the stream is 6.0 kbps. The remaining overhead is the
  small header and the one extra packet that covers the encoder's lookahead.
* Alignment: the decoded stream is shifted by the encoder's pre-skip (312 samples at 48 kHz),
  read from the ``OpusHead`` the encoder writes. libopus equalises the delay of its modes only to
  the granularity of SILK's internal rate (one 8 kHz sample is six 48 kHz samples), so the output
  of the SILK modes sits a few samples off: on speech we measured +3 samples at 8 kbps and -2 at
  12-16 kbps by cross-correlation. The encoder therefore decodes its own packets and stores, as
  the stream's pre-skip, the delay within +-8 samples of 312 that best aligns output and input
  (exactly what an Ogg Opus muxer may do: pre-skip is an encoder-chosen header field). ``decode``
  drops that many samples and cuts to the input length.

Stereo is not offered: the harness codes mono (its default channel policy), so ``spec.channels``
is 1; the shared machinery would carry two channels in one stream if a stereo variant is added.
"""

from __future__ import annotations

import struct

from bench.codecs.base import CodecSpec, OperatingPoint, register_codec
from bench.codecs.pyav_codec import PyAVCodec, varint_bytes

SAMPLE_RATE_HZ = 48_000
FRAME_DURATION_MS = 20
BITRATES_KBPS = (6, 8, 12, 16, 24)


def encoder_bitrate_bps(nominal_kbps: float, frame_duration_ms: int = FRAME_DURATION_MS) -> int:
    """libopus's CBR bit rate so that packet plus its varint length prefix fill the nominal budget.

    A CBR packet holds ``bit_rate * frame / 8`` bytes. We give the encoder the nominal bytes per
    frame minus the length prefix, rounded down to whole bytes: 6 kbps, 20 ms -> 15 bytes a frame
    -> 14-byte packets -> 5600 bit/s.
    """
    budget_bytes = int(nominal_kbps * 1000 * frame_duration_ms / 1000 / 8)
    packet_bytes = budget_bytes - 1
    while packet_bytes + len(varint_bytes(packet_bytes)) > budget_bytes:
        packet_bytes -= 1
    return int(packet_bytes * 8 * 1000 / frame_duration_ms)


def opus_head_pre_skip(extradata: bytes) -> int:
    """Pre-skip (samples at 48 kHz) from the ``OpusHead`` identification header (RFC 7845, 5.1)."""
    if len(extradata) < 12 or extradata[:8] != b"OpusHead":
        raise RuntimeError(f"libopus encoder wrote no OpusHead (extradata {extradata[:16]!r}); cannot align")
    return struct.unpack_from("<H", extradata, 10)[0]


class OpusCodec(PyAVCodec):
    """Opus via libopus: 6-24 kbps CBR, 48 kHz mono, 20 ms frames, real packets as the bitstream."""

    name = "opus"
    encoder_name = "libopus"
    decoder_name = "libopus"
    encoder_sample_format = "flt"
    # libopus decodes to float when asked; the default would be 16-bit integer output
    decoder_options = {"request_sample_fmt": "flt"}
    self_delimiting = False
    delay_search_samples = 8
    backend_library = ("libopus", "opus_get_version_string")

    @property
    def spec(self) -> CodecSpec:
        """48 kHz mono, one hard-CBR operating point per bitrate in :data:`BITRATES_KBPS`."""
        return CodecSpec(
            name=self.name,
            sample_rate_hz=SAMPLE_RATE_HZ,
            channels=1,
            operating_points=[
                OperatingPoint(str(k), float(k), {"bitrate_kbps": k, "encoder_bitrate_bps": encoder_bitrate_bps(k)})
                for k in BITRATES_KBPS
            ],
            family="reference",
            frame_rate_hz=1000.0 / FRAME_DURATION_MS,
            licence="BSD-3-Clause (libopus), via PyAV/FFmpeg (LGPL)",
            requires=["av"],
            description="Opus (libopus) hard CBR, application=audio, 20 ms frames, 48 kHz mono; "
            "nominal kbps includes the per-packet length bytes.",
        )

    def encoder_settings(self, op: OperatingPoint) -> tuple[int, dict[str, str]]:
        """libopus bit rate net of the length prefixes, and its options: audio mode, hard CBR, 20 ms, no DTX."""
        return encoder_bitrate_bps(op.nominal_kbps), {
            "application": "audio",
            "vbr": "off",
            "frame_duration": str(FRAME_DURATION_MS),
            "compression_level": "10",
            "dtx": "0",
        }

    def delay_samples(self, extradata: bytes) -> int:
        """The encoder's pre-skip from its ``OpusHead`` (refined per stream by the delay search)."""
        return opus_head_pre_skip(extradata)


register_codec("opus", OpusCodec)
