"""MP3 (LAME through PyAV): the classic reference a user would otherwise reach for.

Settings, and why:

* **24 kHz mono, MPEG-2 Layer III** (576-sample frames, 24 ms). At 16-64 kbps mono LAME itself
  prefers a reduced rate (its own resampling table picks 16-24 kHz for these bitrates), and MPEG-1
  rates (32/44.1/48 kHz) would spend the few bits on a band LAME low-passes away anyway. One rate for
  every point keeps the harness's single resampling step. The price: no content above 12 kHz, so at
  64 kbps MP3 is bandwidth-limited, which is what MP3 at that rate would be in practice too.
* **CBR** at 16, 32, 48 and 64 kbps (all legal MPEG-2 bitrates), bit reservoir on (LAME default).
  At 24 kHz every frame is exactly ``bitrate * 576 / 24000 / 8`` bytes (no padding slots), so the
  measured bitrate equals the nominal one up to the header and the flush frames.
* **Bitstream**: the raw MP3 frames exactly as an ``.mp3`` file holds them (no ID3/Xing tag).
  MP3 frames carry a sync word and their own size, so no per-frame length is stored; ``from_bytes``
  splits them with FFmpeg's MP3 parser and rejects bytes that are not whole frames.
* **Alignment**: decoded audio lags the input by LAME's encoder delay (576 samples) plus the MP3
  decoder's synthesis delay (528 + 1 samples), i.e. 1105 samples, the same figure FFmpeg records
  as the encoder's initial padding and that the LAME/Xing gapless header stores. We measured it by
  cross-correlation on speech at every bitrate; it is stored in the bitstream and dropped on decode,
  and the encoder's end padding is cut so the output has exactly the input's length.
"""

from __future__ import annotations

from bench.codecs.base import CodecSpec, OperatingPoint, register_codec
from bench.codecs.pyav_codec import PyAVCodec

SAMPLE_RATE_HZ = 24_000
FRAME_SAMPLES = 576  # MPEG-2/2.5 Layer III frame
BITRATES_KBPS = (16, 32, 48, 64)
LAME_ENCODER_DELAY = 576  # lame_get_encoder_delay() for LAME 3.100 defaults
MP3_DECODER_DELAY = 528 + 1  # polyphase synthesis delay of a standard MP3 decoder (FFmpeg, mpg123)


class Mp3Codec(PyAVCodec):
    """MP3 via libmp3lame: CBR 16-64 kbps, 24 kHz mono, raw frames as the bitstream."""

    name = "mp3"
    encoder_name = "libmp3lame"
    decoder_name = "mp3float"
    encoder_sample_format = "fltp"
    decoder_options: dict[str, str] = {}
    self_delimiting = True
    backend_library = ("libmp3lame", "get_lame_version")

    @property
    def spec(self) -> CodecSpec:
        """24 kHz mono, one CBR operating point per bitrate in :data:`BITRATES_KBPS`."""
        return CodecSpec(
            name=self.name,
            sample_rate_hz=SAMPLE_RATE_HZ,
            channels=1,
            operating_points=[OperatingPoint(str(k), float(k), {"bitrate_kbps": k}) for k in BITRATES_KBPS],
            family="reference",
            frame_rate_hz=SAMPLE_RATE_HZ / FRAME_SAMPLES,
            licence="LGPL-2.0 (LAME), via PyAV/FFmpeg (LGPL)",
            requires=["av"],
            description="MP3 (LAME) CBR, MPEG-2 Layer III at 24 kHz mono; raw frames as the bitstream.",
        )

    def encoder_settings(self, op: OperatingPoint) -> tuple[int, dict[str, str]]:
        """LAME CBR at the nominal bitrate (bit/s) with the bit reservoir on."""
        # no global_quality -> FFmpeg's libmp3lame wrapper runs LAME in CBR at bit_rate
        return int(round(op.nominal_kbps * 1000)), {"reservoir": "1"}

    def delay_samples(self, extradata: bytes) -> int:
        """The fixed 1105-sample encoder plus decoder delay (the stream's extradata is not needed)."""
        return LAME_ENCODER_DELAY + MP3_DECODER_DELAY


register_codec("mp3", Mp3Codec)
