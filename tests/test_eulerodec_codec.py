"""The EuleroDec codec adapter: operating points, bitstream round trip, measured size, checkpoint checks."""

from __future__ import annotations

import math

import pytest
import torch

from bench.codecs.base import BitstreamError, pack_header, BitstreamHeader
from bench.codecs.eulerodec import CHECKPOINT_DIR, SHIPPED, EuleroDecCodec
from bench.models.eulerodec_model import EuleroDec, get_config, model_state_for_saving


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from bench.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = EuleroDec(get_config("tiny"))
    model.train()
    x = torch.randn(2, 1, 6000) * 0.1
    for _ in range(3):
        model(x)
    path = tmp_path_factory.mktemp("ckpt") / "eulerodec_tiny.safetensors"
    save_checkpoint(path, model_state_for_saving(model),
                    {"model": "eulerodec", "name": "eulerodec_tiny", "config": model.cfg.to_dict(),
                     "training": {"steps": 3}}, half=True)
    return path


def _clip(n=9000, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 24000.0
    return (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.02 * torch.randn(n, generator=g)).view(1, 1, n)


def test_operating_points_of_one_checkpoint(tiny_checkpoint):
    codec = EuleroDecCodec(str(tiny_checkpoint))
    spec = codec.spec
    cfg = get_config("tiny")
    names = [p.name for p in spec.operating_points]
    assert names == ["3k-n2", "3k-n4", "3k-n8", "3k"]  # sorted by rate; 64-entry codebooks: 6 bits
    full = spec.op("3k")
    assert full.params["n_codebooks"] == 12 and full.nominal_kbps == pytest.approx(cfg.nominal_kbps())
    assert spec.frame_rate_hz == 46.875 and spec.sample_rate_hz == 24000 and spec.channels == 1


def test_bytes_round_trip_decodes_identically_and_size_is_exact(tiny_checkpoint):
    codec = EuleroDecCodec(str(tiny_checkpoint)).load("cpu")
    wav = torch.cat([_clip(9000, 1), _clip(9000, 2)])
    cfg = get_config("tiny")
    for op in ("3k", "3k-n4"):
        enc = codec.encode(wav, op)
        data = codec.to_bytes(enc)
        back = codec.from_bytes(data)
        assert torch.equal(back.payload, enc.payload)
        y1, y2 = codec.decode(enc), codec.decode(back)
        assert y1.shape == wav.shape and torch.equal(y1, y2)
        n = codec.spec.op(op).params["n_codebooks"]
        frames = math.ceil((9000 + 256) / 512)
        header = pack_header(BitstreamHeader("eulerodec", op, 24000, 1, 9000, 2))
        assert len(data) == len(header) + math.ceil(2 * n * frames * cfg.bits_per_code / 8)
    with pytest.raises(BitstreamError):
        codec.from_bytes(data[:-1])


def test_nominal_rates_of_the_two_shipped_sizes_and_measured_kbps(tmp_path):
    """12 codebooks x 11 bits: 6.1875 kbps at 46.875 frames/s, 12.375 kbps at 93.75 frames/s."""
    from bench.models.checkpoint import save_checkpoint

    for name, label, kbps in [("small6", "6k", 6.1875), ("small12", "12k", 12.375)]:
        cfg = get_config(name)
        # write only the card's config: the spec never reads weights
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(path, {"x": torch.zeros(1)}, {"model": "eulerodec", "config": cfg.to_dict()})
        spec = EuleroDecCodec(str(path)).spec
        assert spec.op(label).nominal_kbps == kbps
        assert spec.op(f"{label}-n4").nominal_kbps == pytest.approx(kbps / 3)
        # measured rate of a 10 s payload (header and one frame of padding aside) equals the nominal
        frames = math.ceil((240000 + 256) / cfg.samples_per_frame)
        payload_bits = 12 * frames * 11
        assert payload_bits / 10.0 / 1000 == pytest.approx(kbps, rel=0.01)


def test_checkpoint_errors(tmp_path, tiny_checkpoint):
    from bench.models.checkpoint import CheckpointError

    pickle = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pickle)
    with pytest.raises(CheckpointError, match="pickle|safetensors|card"):
        EuleroDecCodec(str(pickle)).spec
    with pytest.raises(CheckpointError, match="no such checkpoint|not found|no card"):
        EuleroDecCodec(str(tmp_path / "missing.safetensors")).spec
    other = tmp_path / "other.safetensors"
    from bench.models.checkpoint import save_checkpoint

    save_checkpoint(other, {"x": torch.zeros(1)}, {"model": "dac", "config": {}})
    with pytest.raises(CheckpointError, match="not 'eulerodec'"):
        EuleroDecCodec(str(other)).spec


def test_shipped_checkpoints_give_both_rates():
    present = [n for n in SHIPPED if (CHECKPOINT_DIR / f"{n}.safetensors").exists()]
    if len(present) < 2:
        pytest.skip("shipped EuleroDec checkpoints not in this checkout")
    codec = EuleroDecCodec()
    ops = {p.name: p.nominal_kbps for p in codec.spec.operating_points}
    assert ops["6k"] == 6.1875 and ops["12k"] == 12.375
    assert {"6k-n8", "6k-n4", "6k-n2", "12k-n8", "12k-n4", "12k-n2"} <= set(ops)
    for name in SHIPPED:
        assert (CHECKPOINT_DIR / f"{name}.safetensors").stat().st_size < 10e6
    codec.load("cpu")
    wav = _clip(12000)
    enc = codec.encode(wav, "12k")
    assert torch.equal(codec.decode(codec.from_bytes(codec.to_bytes(enc))), codec.decode(enc))
