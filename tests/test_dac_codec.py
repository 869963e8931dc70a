"""The ``dac`` codec adapter: checkpoint loading by path, operating points and nominal kbps, the packed
bitstream (exact round trip, exact size, corrupt input refused), and, with the shipped checkpoint, that
quality rises as codebooks are added on real speech."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.codecs import dac as dac_module
from bench.codecs.base import BitstreamError, select_codecs
from bench.codecs.dac import DACCodec
from bench.models.bitpack import pack_codes, packed_size, unpack_codes
from bench.models.dac_model import CONFIGS, DAC
from bench.models.checkpoint import CheckpointError, module_tensors, save_checkpoint
from shared_paths import SHARED_AUDIO

torch.set_num_threads(1)
SPEECH = SHARED_AUDIO / "train" / "speech" / "vctk-p239" / "p239_004.flac"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = DAC(CONFIGS["tiny"]).eval()
    path = tmp_path_factory.mktemp("dac") / "dac_tiny.safetensors"
    card = {"model": "dac", "name": "dac_tiny", "config": CONFIGS["tiny"].to_dict(),
            "training": {"steps": 0, "device": "none (random init, for tests)"}}
    save_checkpoint(path, module_tensors("generator", model), card)
    return path, model


def test_missing_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dac_module, "DEFAULT_CHECKPOINT", tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="shipped DAC checkpoint is missing"):
        DACCodec().spec
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        DACCodec(checkpoint=str(tmp_path / "nope.safetensors")).spec


def test_spec_from_the_card(tiny_checkpoint):
    path, _ = tiny_checkpoint
    codec = DACCodec(checkpoint=str(path))
    spec = codec.spec
    cfg = CONFIGS["tiny"]
    assert [op.name for op in spec.operating_points] == ["1", "2", "3", "4"]
    for n, op in enumerate(spec.operating_points, start=1):
        assert op.nominal_kbps == pytest.approx(cfg.frame_rate_hz * n * math.log2(cfg.codebook_size) / 1000)
        assert op.params == {"n_codebooks": n}
    assert spec.sample_rate_hz == 16000 and spec.codebook_sizes == [64] * 4 and spec.frame_rate_hz == 400
    assert codec.checkpoint_hash == codec.card["weights_sha256"]
    # the same path through --codecs, with and without the .safetensors suffix
    sel = select_codecs(f"dac:{path}@2")
    assert [s.op.name for s in sel] == ["2"] and sel[0].codec.checkpoint == str(path)
    assert DACCodec(checkpoint=str(path.with_suffix(""))).spec.name == "dac"


def test_codec_outputs_equal_the_saved_model(tiny_checkpoint):
    torch.manual_seed(1)
    path, model = tiny_checkpoint
    codec = DACCodec(checkpoint=str(path)).load()
    x = 0.2 * torch.randn(2, 1, 1234)
    enc = codec.encode(x, "3")
    with torch.no_grad():
        assert torch.equal(enc.payload, model.encode(x, 3))
        assert torch.equal(codec.decode(enc), model.decode(model.encode(x, 3), 1234))
    assert enc.payload.shape == (2, 3, math.ceil(1234 / 40))
    # exactly the first n codebooks: a prefix of the full-depth codes
    assert torch.equal(codec.encode(x, "4").payload[:, :3], enc.payload)


def test_bitstream_round_trip_size_and_corruption(tiny_checkpoint):
    torch.manual_seed(2)
    path, _ = tiny_checkpoint
    codec = DACCodec(checkpoint=str(path)).load()
    x = 0.2 * torch.randn(3, 1, 4001)
    enc = codec.encode(x, "2")
    data = codec.to_bytes(enc)
    frames = math.ceil(4001 / 40)
    body = packed_size(3 * 2 * frames, 6)
    back = codec.from_bytes(data)
    assert torch.equal(back.payload, enc.payload)
    assert torch.equal(codec.decode(back), codec.decode(enc))
    assert codec.to_bytes(back) == data
    header_len = len(data) - body
    assert 0 < header_len < 32
    with pytest.raises(BitstreamError):
        codec.from_bytes(data[:-1])
    with pytest.raises(BitstreamError):
        codec.from_bytes(data + b"\x00")


def test_measured_kbps_matches_nominal(tiny_checkpoint):
    torch.manual_seed(3)
    path, _ = tiny_checkpoint
    codec = DACCodec(checkpoint=str(path)).load()
    x = 0.2 * torch.randn(1, 1, 16000 * 5)
    for op in codec.spec.operating_points:
        kbps = len(codec.to_bytes(codec.encode(x, op))) * 8 / 5.0 / 1000
        assert 0 <= kbps - op.nominal_kbps < 0.05  # only the ~20-byte header on top of the codes


@pytest.mark.parametrize("bits", [1, 3, 6, 10, 11, 16])
def test_bitpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=(2, 3, 7))
    data = pack_codes(codes, bits)
    assert len(data) == packed_size(codes.size, bits)
    assert np.array_equal(unpack_codes(data, bits, codes.size).reshape(codes.shape), codes)
    with pytest.raises(ValueError):
        pack_codes(np.array([1 << bits]), bits)


def test_shipped_checkpoint_improves_with_codebooks():
    if not dac_module.DEFAULT_CHECKPOINT.exists():
        pytest.skip("no shipped DAC checkpoint in this checkout")
    if not SPEECH.exists():
        pytest.skip(f"shared audio not found at {SPEECH}")
    from bench.audio import load_audio, normalize_loudness, resample, to_channels
    from bench.metrics.mel import MultiScaleMelDistance

    codec = DACCodec().load()
    sr = codec.spec.sample_rate_hz
    audio = load_audio(SPEECH, start_s=1.0, duration_s=2.0)
    x = resample(to_channels(audio.samples, 1), audio.sample_rate_hz, sr)
    x, _ = normalize_loudness(x, sr)
    wav = torch.from_numpy(x)[None]
    mel = MultiScaleMelDistance(sample_rate_hz=sr)
    n_max = len(codec.spec.operating_points)
    dist = {n: float(mel(codec.decode(codec.from_bytes(codec.to_bytes(codec.encode(wav, str(n))))), wav))
            for n in (1, n_max)}
    assert dist[n_max] < dist[1], dist
