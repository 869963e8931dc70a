"""SNAC through the ``snac`` package: a random-init small model saved as config.json + model.safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

snac = pytest.importorskip("snac")
pytest.importorskip("safetensors")

from bench.codecs.base import BitstreamError  # noqa: E402
from bench.codecs.snac import NOISE_SEED, SNACCodec, convert_snac  # noqa: E402
from bench.errors import UserError  # noqa: E402

SMALL = {
    "sampling_rate": 24_000, "encoder_dim": 8, "encoder_rates": [2, 4], "decoder_dim": 16,
    "decoder_rates": [4, 2], "attn_window_size": None, "codebook_size": 256, "codebook_dim": 4,
    "vq_strides": [4, 2, 1], "noise": True, "depthwise": True,
}


def _save(model: torch.nn.Module, config: dict[str, object], folder: Path) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def small(tmp_path: Path) -> tuple[torch.nn.Module, SNACCodec]:
    torch.manual_seed(1)
    model = snac.SNAC(**SMALL).eval()
    folder = _save(model, SMALL, tmp_path / "snac_small")
    return model, SNACCodec(str(folder)).load()


def _wav(n: int, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (0.3 * torch.randn(batch, 1, n, generator=g)).clamp(-1, 1)


def test_nominal_kbps_is_the_sum_over_levels_of_frame_rate_times_bits(small: tuple[torch.nn.Module, SNACCodec]) -> None:
    _, codec = small
    frame_rate = 24_000 / 8
    assert codec.spec.op("full").nominal_kbps == pytest.approx((frame_rate / 4 + frame_rate / 2 + frame_rate) * 8 / 1000)


def test_round_trip_codes_length_and_measured_kbps(small: tuple[torch.nn.Module, SNACCodec]) -> None:
    _, codec = small
    wav = _wav(24_000 - 37)
    enc = codec.encode(wav, "full")
    data = codec.to_bytes(enc)
    back = codec.from_bytes(data)
    assert all(torch.equal(a, b) for a, b in zip(enc.payload, back.payload))
    out = codec.decode(back)
    assert out.shape == wav.shape and torch.isfinite(out).all()
    assert torch.equal(out, codec.decode(enc)), "decoding is deterministic"
    measured = len(data) * 8 / (wav.shape[-1] / 24_000) / 1000 / wav.shape[0]
    assert measured == pytest.approx(codec.spec.op("full").nominal_kbps, rel=0.05)


def test_output_equals_snac_own_encode_and_decode(small: tuple[torch.nn.Module, SNACCodec]) -> None:
    model, codec = small
    wav = _wav(5_000, batch=1)
    enc = codec.encode(wav, "full")
    with torch.inference_mode():
        ref_codes = model.encode(wav)
        torch.manual_seed(NOISE_SEED)
        ref = model.decode(ref_codes)[..., : wav.shape[-1]]
    assert all(torch.equal(a, b) for a, b in zip(enc.payload, ref_codes))
    assert torch.equal(codec.decode(codec.from_bytes(codec.to_bytes(enc))), ref)


def test_bad_bytes_and_missing_weights_are_clear(small: tuple[torch.nn.Module, SNACCodec], tmp_path: Path) -> None:
    _, codec = small
    data = codec.to_bytes(codec.encode(_wav(2_000), "full"))
    with pytest.raises(BitstreamError, match="truncated"):
        codec.from_bytes(data[:-1])
    with pytest.raises(UserError, match="convert_snac"):
        _ = SNACCodec().spec
    with pytest.raises(UserError, match="model.safetensors"):
        _ = SNACCodec(str(tmp_path)).spec


def test_convert_snac_reads_a_release_folder_with_the_weights_only_loader(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = snac.SNAC(**SMALL).eval()
    release = tmp_path / "release"
    release.mkdir()
    (release / "config.json").write_text(json.dumps(SMALL))
    torch.save(model.state_dict(), release / "pytorch_model.bin")
    out = convert_snac(release, tmp_path / "converted")
    codec = SNACCodec(str(out)).load()
    wav = _wav(3_000, batch=1)
    with torch.inference_mode():
        ref_codes = model.encode(wav)
    assert all(torch.equal(a, b) for a, b in zip(codec.encode(wav, "full").payload, ref_codes))
