"""The ``vrvq`` codec: operating points, a real variable-rate bitstream with its side information,
byte round trips, rate rising with the level, and fewer codebooks on silence (shipped model).

The bitstream tests use a ``tiny`` VRVQ saved as a bench checkpoint in a temporary folder; the
behavioural tests (rate vs level, silence) use the shipped, trained ``small`` checkpoint on real
speech from ``../shared/audio`` and skip cleanly where either is absent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.codecs.base import BitstreamError, unpack_header
from bench.models.vrvq_model import CONFIGS, VRVQ
from bench.codecs.vrvq import DEFAULT_CHECKPOINT, VRVQCodec, pack_fields, read_field
from bench.models.checkpoint import module_tensors, save_checkpoint
from shared_paths import SHARED_AUDIO

torch.set_num_threads(1)

SPEECH = SHARED_AUDIO / "train" / "speech" / "vctk-p239" / "p239_004.flac"


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory) -> VRVQCodec:
    torch.manual_seed(0)
    model = VRVQ(CONFIGS["tiny"])
    model(torch.randn(4, 1, 1600) * 0.1)  # one training-mode pass measures the importance input RMS
    path = tmp_path_factory.mktemp("vrvq") / "vrvq_tiny.safetensors"
    card = {"model": "vrvq", "name": "vrvq_tiny", "config": CONFIGS["tiny"].to_dict(), "training": {"steps": 0}}
    save_checkpoint(path, module_tensors("generator", model), card)
    return VRVQCodec(str(path)).load()


def _speech(sample_rate_hz: int, start_s: float, duration_s: float) -> torch.Tensor:
    from bench.audio import load_audio, normalize_loudness, resample, to_channels

    if not SPEECH.exists():
        pytest.skip(f"real speech not found at {SPEECH}")
    audio = load_audio(SPEECH, start_s=start_s, duration_s=duration_s)
    x = resample(to_channels(audio.samples, 1, "mono"), audio.sample_rate_hz, sample_rate_hz)
    x, _ = normalize_loudness(x, sample_rate_hz, -16.0)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]


@pytest.fixture(scope="module")
def shipped() -> VRVQCodec:
    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip(f"shipped VRVQ checkpoint not found at {DEFAULT_CHECKPOINT}")
    return VRVQCodec().load()


def test_operating_points_vbr_levels_and_cbr_counts(tiny_codec):
    spec = tiny_codec.spec
    cfg = tiny_codec.config
    vbr = [op for op in spec.operating_points if op.kind == "vbr"]
    cbr = [op for op in spec.operating_points if op.kind == "cbr"]
    assert [op.name for op in cbr] == [f"n{n}" for n in range(1, cfg.n_codebooks + 1)]
    assert len(vbr) >= 5 and all(op.name.startswith("L") for op in vbr)
    fps, bits = cfg.backbone.frame_rate_hz, cfg.backbone.bits_per_code
    for op in cbr:
        assert op.nominal_kbps == pytest.approx(fps * op.params["n_codebooks"] * bits / 1000, rel=1e-4)
    # this card has no validation table: VBR nominal is the level's upper bound, side info included
    for op in vbr:
        upper = min(cfg.n_codebooks, math.floor(op.params["level"] * cfg.n_codebooks) + 1)
        assert op.nominal_kbps == pytest.approx(fps * (upper * bits + cfg.count_bits) / 1000, rel=1e-4)
    assert [op.nominal_kbps for op in vbr] == sorted(op.nominal_kbps for op in vbr)


def test_bit_fields_round_trip():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 8, 37), rng.integers(0, 1024, 101)
    data = pack_fields([(a, 3), (b, 10)])
    assert len(data) == math.ceil((37 * 3 + 101 * 10) / 8)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    assert np.array_equal(read_field(bits, 0, 37, 3), a)
    assert np.array_equal(read_field(bits, 37 * 3, 101, 10), b)
    with pytest.raises(ValueError):
        pack_fields([(np.array([8]), 3)])


@pytest.mark.parametrize("op_name", ["L0.25", "L1", "L6", "n1", "n4"])
def test_bytes_round_trip_decodes_identically(tiny_codec, op_name):
    torch.manual_seed(5)
    x = torch.randn(2, 1, 3001) * 0.2
    enc = tiny_codec.encode(x, op_name)
    data = tiny_codec.to_bytes(enc)
    back = tiny_codec.from_bytes(data)
    assert back.operating_point == op_name and back.num_samples == 3001 and back.batch_size == 2
    assert torch.equal(back.payload["counts"], enc.payload["counts"])
    assert torch.equal(back.payload["codes"], enc.payload["codes"])
    assert torch.equal(tiny_codec.decode(back), tiny_codec.decode(enc))
    assert tiny_codec.to_bytes(back) == data
    assert tiny_codec.decode(back).shape == x.shape


def _body(codec: VRVQCodec, data: bytes) -> bytes:
    return unpack_header(data)[1]


def test_side_information_is_counted_in_the_bytes(tiny_codec):
    torch.manual_seed(1)
    cfg = tiny_codec.config
    x = torch.randn(1, 1, 4000) * 0.2
    frames = math.ceil(4000 / cfg.backbone.hop_length)
    bits = cfg.backbone.bits_per_code
    for level in (0.25, 1.0, 6.0):
        enc = tiny_codec.encode(x, f"L{level:g}")
        counts = enc.payload["counts"]
        body = _body(tiny_codec, tiny_codec.to_bytes(enc))
        payload_bits = frames * cfg.count_bits + int(counts.sum()) * bits
        assert len(body) == math.ceil(payload_bits / 8)
        assert cfg.count_bits == math.ceil(math.log2(cfg.n_codebooks))
    # a VBR stream whose frames all use N codebooks costs exactly the side information more than CBR nN
    nq = cfg.n_codebooks
    cbr_enc = tiny_codec.encode(x, f"n{nq}")
    vbr_enc = tiny_codec.encode(x, "L6")
    vbr_enc.payload = {"codes": cbr_enc.payload["codes"], "counts": torch.full((1, frames), nq, dtype=torch.long)}
    cbr = _body(tiny_codec, tiny_codec.to_bytes(cbr_enc))
    vbr = _body(tiny_codec, tiny_codec.to_bytes(vbr_enc))
    assert len(cbr) == math.ceil(frames * nq * bits / 8)
    assert len(vbr) == math.ceil((frames * cfg.count_bits + frames * nq * bits) / 8)
    assert torch.equal(tiny_codec.decode(tiny_codec.from_bytes(tiny_codec.to_bytes(vbr_enc))),
                       tiny_codec.decode(cbr_enc))


def test_counts_really_drive_the_size(tiny_codec):
    """Hand-made payloads: fewer active codes in the same frames give fewer bytes, and decode."""
    torch.manual_seed(2)
    cfg = tiny_codec.config
    enc = tiny_codec.encode(torch.randn(1, 1, 2000) * 0.2, "L6")
    frames = enc.payload["counts"].shape[-1]
    sizes = []
    for n in range(1, cfg.n_codebooks + 1):
        counts = torch.full((1, frames), n, dtype=torch.long)
        codes = enc.payload["codes"] * (torch.arange(cfg.n_codebooks)[None, :, None] < n)
        enc.payload = {"codes": codes, "counts": counts}
        data = tiny_codec.to_bytes(enc)
        assert torch.equal(tiny_codec.from_bytes(data).payload["codes"], codes)
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_bad_bytes_raise(tiny_codec):
    torch.manual_seed(3)
    data = tiny_codec.to_bytes(tiny_codec.encode(torch.randn(1, 1, 2000) * 0.2, "L1"))
    with pytest.raises(BitstreamError):
        tiny_codec.from_bytes(data[:-3])
    with pytest.raises(BitstreamError):
        tiny_codec.from_bytes(data + b"\x00\x00")
    cbr = tiny_codec.to_bytes(tiny_codec.encode(torch.randn(1, 1, 2000) * 0.2, "n2"))
    with pytest.raises(BitstreamError):
        tiny_codec.from_bytes(cbr[:-1])


def test_measured_kbps_rises_with_the_level(shipped):
    sr = shipped.spec.sample_rate_hz
    x = _speech(sr, 0.5, 3.0)
    duration_s = x.shape[-1] / sr
    ops = [op for op in shipped.spec.operating_points if op.kind == "vbr"]
    kbps = [len(shipped.to_bytes(shipped.encode(x, op))) * 8 / duration_s / 1000 for op in ops]
    assert kbps == sorted(kbps), dict(zip([op.name for op in ops], kbps))
    assert kbps[-1] > kbps[0]


def test_silent_frames_use_fewer_codebooks(shipped):
    """Speech then digital silence: the trained importance map spends fewer codebooks on the silence."""
    sr = shipped.spec.sample_rate_hz
    speech = _speech(sr, 0.5, 2.0)
    clip = torch.cat([speech, torch.zeros_like(speech)], dim=-1)
    hop = shipped.config.backbone.hop_length
    n_speech = speech.shape[-1] // hop
    margin = 4  # frames around the boundary see both halves through the convolutions
    with torch.no_grad():
        _, p = shipped.model.analyse(clip)
    # the learned importance is lower on silence than on speech (in every frame's average)
    assert float(p[0, n_speech + margin :].mean()) < float(p[0, : n_speech - margin].mean())
    fewer_at = []
    for op in [op for op in shipped.spec.operating_points if op.kind == "vbr"]:
        counts = shipped.encode(clip, op).payload["counts"][0].float()
        on_speech = counts[: n_speech - margin].mean()
        on_silence = counts[n_speech + margin :].mean()
        assert on_silence <= on_speech, op.name
        fewer_at.append(bool(on_silence < on_speech))
    assert sum(fewer_at) >= len(fewer_at) // 2
    # and the bitstream is smaller than for speech throughout, at a mid level
    both = torch.cat([speech, speech], dim=-1)
    assert len(shipped.to_bytes(shipped.encode(clip, "L1"))) < len(shipped.to_bytes(shipped.encode(both, "L1")))
