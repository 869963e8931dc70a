"""The reference codecs (opus, mp3, pcm16) and their PyAV machinery, beyond the common contract.

Checks what is specific to each: Opus's CBR packet sizes and budget, its OpusHead pre-skip and the
bounded delay refinement; MP3's raw frames (sync words, fixed sizes) and its 1105-sample delay; impulse
alignment; exact lengths at awkward sizes; batch items coded independently; PCM's half-LSB error;
the varint framing; backend versions in ``checkpoint_hash``.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
import torch

from bench.audio import load_audio, resample
from bench.codecs.base import BitstreamError, pack_header, unpack_header
from bench.codecs.mp3 import LAME_ENCODER_DELAY, MP3_DECODER_DELAY, Mp3Codec
from bench.codecs.opus import OpusCodec, encoder_bitrate_bps, opus_head_pre_skip
from bench.codecs.pcm import Pcm16Codec
from bench.codecs.pyav_codec import PacketStream, read_varint, refine_delay, varint_bytes
from shared_paths import SHARED_AUDIO

SPEECH_5S = SHARED_AUDIO / "train" / "speech" / "vctk-p239" / "p239_004.flac"

torch.set_num_threads(1)


@lru_cache(maxsize=None)
def _codec(cls):
    return cls().load()


@lru_cache(maxsize=None)
def _speech(sample_rate_hz: int) -> torch.Tensor:
    if not SPEECH_5S.is_file():
        pytest.skip(f"real speech not found at {SPEECH_5S}")
    audio = load_audio(SPEECH_5S)
    return torch.from_numpy(resample(audio.samples.mean(0, keepdims=True), audio.sample_rate_hz, sample_rate_hz))[None]


def _impulses(n: int, positions: list[int]) -> torch.Tensor:
    x = torch.zeros(1, 1, n)
    for p in positions:
        x[0, 0, p] = 0.8
    return x


# --- varint framing --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 312, 16383, 16384, 2**32 + 5])
def test_varint_round_trip(value):
    raw = varint_bytes(value)
    assert len(raw) == max(1, (value.bit_length() + 6) // 7)
    assert read_varint(raw + b"\xff", 0) == (value, len(raw))


def test_varint_truncated_and_negative():
    with pytest.raises(BitstreamError, match="truncated"):
        read_varint(varint_bytes(300)[:1], 0)
    with pytest.raises(ValueError):
        varint_bytes(-1)


# --- opus ------------------------------------------------------------------------------------


def test_opus_encoder_budget_leaves_room_for_the_length_byte():
    # 20 ms frames: nominal bytes per frame = kbps * 2.5; one goes to the varint length
    assert [encoder_bitrate_bps(k) for k in (6, 8, 12, 16, 24)] == [5600, 7600, 11600, 15600, 23600]


@pytest.mark.parametrize("op", ["6", "8", "12", "16", "24"])
def test_opus_cbr_packets_fill_the_nominal_budget(op):
    codec = _codec(OpusCodec)
    x = _speech(48000)
    enc = codec.encode(x, op)
    (stream,) = enc.payload
    sizes = {len(p) for p in stream.packets}
    assert sizes == {encoder_bitrate_bps(float(op)) * 20 // 1000 // 8}, "hard CBR: every packet the same size"
    frames_needed = -(-(x.shape[-1] + 312) // 960)
    assert len(stream.packets) == frames_needed, "one packet per 20 ms of input plus lookahead, no more"
    data = codec.to_bytes(enc)
    measured_kbps = len(data) * 8 / (x.shape[-1] / 48000) / 1000
    assert measured_kbps == pytest.approx(float(op), rel=0.02), "CBR + compensated framing: within 2%"
    # real Opus packets: the TOC byte says one 20 ms frame (code 0, or code 3 with a frame count of 1,
    # which libopus uses to pad a CBR packet to its size)
    for packet in stream.packets:
        config, code = packet[0] >> 3, packet[0] & 0x3
        assert code == 0 or (code == 3 and packet[1] & 0x3F == 1)
        assert _toc_frame_ms(config) == 20


def _toc_frame_ms(config: int) -> float:
    """Frame duration of an Opus TOC configuration number (RFC 6716, table 2)."""
    if config < 12:  # SILK-only
        return (10, 20, 40, 60)[config % 4]
    if config < 16:  # hybrid
        return (10, 20)[config % 2]
    return (2.5, 5, 10, 20)[config % 4]  # CELT-only


def test_opus_pre_skip_from_opus_head():
    head = b"OpusHead" + bytes([1, 1]) + (312).to_bytes(2, "little") + (48000).to_bytes(4, "little") + b"\0\0\0"
    assert opus_head_pre_skip(head) == 312
    with pytest.raises(RuntimeError, match="OpusHead"):
        opus_head_pre_skip(b"")


@pytest.mark.parametrize("op", ["6", "12", "24"])
def test_opus_stored_delay_stays_near_the_pre_skip(op):
    codec = _codec(OpusCodec)
    (stream,) = codec.encode(_speech(48000), op).payload
    assert abs(stream.delay_samples - 312) <= OpusCodec.delay_search_samples


def test_refine_delay_finds_a_known_shift_and_falls_back_on_silence():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((1, 4000)).astype(np.float32)
    decoded = np.concatenate([np.zeros((1, 315), np.float32), ref, np.zeros((1, 500), np.float32)], axis=1)
    assert refine_delay(ref, decoded, 312, 8) == 315
    # white noise one sample off is uncorrelated: out of the window, keep the nominal delay
    assert refine_delay(ref, decoded, 312, 2) == 312
    assert refine_delay(np.zeros_like(ref), decoded, 312, 8) == 312
    noise = rng.standard_normal(decoded.shape).astype(np.float32)
    assert refine_delay(ref, noise, 312, 8) == 312, "uncorrelated output keeps the nominal delay"


@pytest.mark.parametrize("op", ["6", "8", "12", "16", "24"])
def test_opus_pre_skip_alone_is_within_the_search_window(op):
    """The header's pre-skip is nearly right; the refinement only fixes a residual of a few samples.

    Decoding with the bare pre-skip (no search) must already line up within the search window, so
    the stored delay is a correction of the codec's own figure, never an arbitrary shift.
    """
    codec = _codec(OpusCodec)
    x = _speech(48000)[..., :96000]
    enc = codec.encode(x, op)
    (stream,) = enc.payload
    enc.payload = [PacketStream(312, stream.packets)]
    y = codec.decode(enc)
    a, b = x[0, 0].double().numpy(), y[0, 0].double().numpy()
    lags = range(-OpusCodec.delay_search_samples, OpusCodec.delay_search_samples + 1)
    corr = [np.dot(a[max(0, -k) : len(a) - max(0, k)], b[max(0, k) : len(b) - max(0, -k)]) for k in lags]
    wide = [np.dot(a[max(0, -k) : len(a) - max(0, k)], b[max(0, k) : len(b) - max(0, -k)]) for k in range(-48, 49)]
    assert max(corr) == pytest.approx(max(wide)), "the best lag lies inside the search window"
    assert stream.delay_samples - 312 == list(lags)[int(np.argmax(corr))]


def test_opus_frame_padding_and_tiny_lengths():
    codec = _codec(OpusCodec)
    for n in (1, 2, 959, 960, 961, 48000 - 1):
        x = 0.1 * torch.randn(1, 1, n, generator=torch.Generator().manual_seed(n))
        y = codec.decode(codec.from_bytes(codec.to_bytes(codec.encode(x, "12"))))
        assert tuple(y.shape) == (1, 1, n)


def test_opus_batch_items_are_coded_independently():
    codec = _codec(OpusCodec)
    x = _speech(48000)[..., :48000]
    other = 0.2 * torch.randn(1, 1, 48000, generator=torch.Generator().manual_seed(3))
    batch = codec.encode(torch.cat([x, other]), "16")
    alone = codec.encode(x, "16")
    assert batch.payload[0].packets == alone.payload[0].packets
    assert torch.equal(codec.decode(batch)[:1], codec.decode(alone))


def test_opus_rejects_stereo_and_wrong_rate_bitstreams():
    codec = _codec(OpusCodec)
    with pytest.raises(ValueError, match="channel"):
        codec.encode(torch.zeros(1, 2, 960), "12")
    data = codec.to_bytes(codec.encode(torch.zeros(1, 1, 960), "12"))
    header, body = unpack_header(data)
    with pytest.raises(BitstreamError, match="Hz"):
        codec.from_bytes(pack_header(replace(header, sample_rate_hz=44100)) + body)
    with pytest.raises(KeyError, match="operating point"):
        codec.from_bytes(pack_header(replace(header, operating_point="7")) + body)


def test_opus_decoder_reports_a_stream_too_short_for_its_length():
    codec = _codec(OpusCodec)
    enc = codec.encode(0.1 * torch.randn(1, 1, 9600, generator=torch.Generator().manual_seed(0)), "12")
    stream = enc.payload[0]
    enc.payload = [PacketStream(stream.delay_samples, stream.packets[:-3])]
    with pytest.raises(BitstreamError, match="truncated or corrupt"):
        codec.decode(enc)


def test_opus_checkpoint_hash_names_libopus():
    version = OpusCodec().checkpoint_hash
    assert version.startswith("libopus ") and "unknown" not in version.split(";")[0]
    assert "av " in version and "libavcodec" in version


# --- mp3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["16", "32", "48", "64"])
def test_mp3_bitstream_is_raw_cbr_frames(op):
    codec = _codec(Mp3Codec)
    x = _speech(24000)
    enc = codec.encode(x, op)
    (stream,) = enc.payload
    frame_bytes = int(op) * 1000 * 576 // 24000 // 8
    assert {len(p) for p in stream.packets} == {frame_bytes}
    for p in stream.packets:  # sync word, MPEG-2 (ID bits 10), Layer III (01)
        assert p[0] == 0xFF and (p[1] & 0xFE) == 0xF2
    assert stream.delay_samples == LAME_ENCODER_DELAY + MP3_DECODER_DELAY == 1105
    data = codec.to_bytes(enc)
    assert b"".join(stream.packets) in data, "the frames are stored as they are, without per-frame lengths"
    measured_kbps = len(data) * 8 / (x.shape[-1] / 24000) / 1000
    assert measured_kbps == pytest.approx(float(op), rel=0.05)


@pytest.mark.parametrize("op", ["16", "64"])
def test_mp3_impulses_come_back_in_place(op):
    codec = _codec(Mp3Codec)
    positions = [2400, 8000, 15001]
    y = codec.decode(codec.encode(_impulses(24000, positions), op))[0, 0]
    for p in positions:
        window = y[p - 240 : p + 240].abs()
        assert int(window.argmax()) - 240 == 0


def test_mp3_rejects_bytes_that_are_not_whole_frames():
    codec = _codec(Mp3Codec)
    enc = codec.encode(0.1 * torch.randn(1, 1, 24000, generator=torch.Generator().manual_seed(0)), "32")
    data = codec.to_bytes(enc)
    frames = b"".join(enc.payload[0].packets)
    at = data.index(frames) + 3 * len(enc.payload[0].packets[0])  # the 4th frame's header
    garbled = data[:at] + b"\x00\x00\x00\x00" + data[at + 4 :]  # same length, sync word gone
    with pytest.raises(BitstreamError):
        codec.decode(codec.from_bytes(garbled))
    assert torch.isfinite(codec.decode(codec.from_bytes(data))).all()


def test_mp3_tiny_lengths_and_checkpoint_hash():
    codec = _codec(Mp3Codec)
    for n in (1, 575, 577, 1105):
        y = codec.decode(codec.from_bytes(codec.to_bytes(codec.encode(torch.full((1, 1, n), 0.1), "32"))))
        assert tuple(y.shape) == (1, 1, n)
    assert Mp3Codec().checkpoint_hash.startswith("libmp3lame 3.")


# --- pcm16 -----------------------------------------------------------------------------------


def test_pcm16_error_within_half_an_lsb_and_exact_size():
    codec = _codec(Pcm16Codec)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 1, 44100, generator=g) * 2 - 1) * (1 - 2**-15)
    enc = codec.encode(x, "16bit")
    data = codec.to_bytes(enc)
    assert len(unpack_header(data)[1]) == 2 * 2 * 44100, "the body is the samples and nothing else"
    y = codec.decode(codec.from_bytes(data))
    assert (y - x).abs().max().item() <= 0.5 / 32768 + 1e-9
    assert codec.spec.op("16bit").nominal_kbps == 705.6


def test_pcm16_clips_out_of_range_and_is_exact_on_the_grid():
    codec = _codec(Pcm16Codec)
    grid = torch.tensor([[[-1.0, -0.5, 0.0, 1 / 32768, 32767 / 32768]]])
    assert torch.equal(codec.decode(codec.encode(grid, "16bit")), grid)
    loud = torch.tensor([[[1.5, -1.5, 1.0]]])
    assert codec.decode(codec.encode(loud, "16bit")).tolist() == [[[32767 / 32768, -1.0, 32767 / 32768]]]


def test_pcm16_keeps_any_channel_count():
    codec = _codec(Pcm16Codec)
    x = torch.linspace(-0.5, 0.5, 6 * 100).reshape(1, 6, 100)
    y = codec.decode(codec.from_bytes(codec.to_bytes(codec.encode(x, "16bit"))))
    assert y.shape == x.shape and (y - x).abs().max() <= 0.5 / 32768 + 1e-9
