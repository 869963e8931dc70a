"""Converting the official VRVQ release: a random ``tiny`` VRVQ of ours, written in the official layout,
converted and loaded through the ``vrvq`` codec, codes and decodes bit-identically (CBR and VBR).

The official layout (lixinghe1999/VRVQ on descript-audio-codec's modules), from ours:

* ``encoder.body.{i}`` -> ``encoder.block.{i}``; ``encoder.head.{j}`` -> ``encoder.block.{n_body + j}``;
* ``importance.blocks.0`` -> ``quantizer.imp_subnet.in_block``;
  ``importance.blocks.{i}`` (i >= 1) -> ``quantizer.imp_subnet.blocks.{i - 1}``;
* ``decoder.model.*`` and ``quantizer.quantizers.*`` unchanged;
* ``.parametrizations.weight.original0/1`` -> ``.weight_g`` / ``.weight_v`` (old weight norm);
* saved as ``torch.save({"model_state_dict": state}, path)``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.codecs.vrvq import VRVQCodec
from bench.errors import UserError
from bench.models.vrvq_convert import convert_vrvq_release
from bench.models.vrvq_model import CONFIGS, VRVQ, VRVQConfig

torch.set_num_threads(1)


def _config() -> VRVQConfig:
    """``tiny`` in the released layout: no odd-stride output padding, no importance input norm."""
    tiny = CONFIGS["tiny"]
    return replace(tiny, backbone=replace(tiny.backbone, odd_stride_output_padding=False),
                   importance_input_norm=False)


def _official_key(key: str, n_body: int) -> str:
    """The official name of one of our weights (the inverse of the converter's mapping)."""
    key = key.replace(".parametrizations.weight.original0", ".weight_g")
    key = key.replace(".parametrizations.weight.original1", ".weight_v")
    if m := re.match(r"^encoder\.head\.(\d+)\.", key):
        return f"encoder.block.{n_body + int(m.group(1))}.{key[m.end():]}"
    if key.startswith("encoder.body."):
        return "encoder.block." + key[len("encoder.body."):]
    if m := re.match(r"^importance\.blocks\.(\d+)\.", key):
        i = int(m.group(1))
        block = "in_block" if i == 0 else f"blocks.{i - 1}"
        return f"quantizer.imp_subnet.{block}.{key[m.end():]}"
    assert key.startswith(("decoder.model.", "quantizer.quantizers.")), key
    return key


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[VRVQ, VRVQCodec]:
    """(our original model, the codec loading its converted official-layout release)."""
    torch.manual_seed(0)
    model = VRVQ(_config()).eval()
    n_body = len(model.encoder.body)
    official = {_official_key(k, n_body): v for k, v in model.state_dict().items()}
    assert len(official) == len(model.state_dict())
    folder = tmp_path_factory.mktemp("vrvq_release")
    torch.save({"model_state_dict": official}, folder / "vrvq_release.pth")
    out = convert_vrvq_release(folder / "vrvq_release.pth", folder / "vrvq_conv.safetensors",
                               sample_rate_hz=16000)
    codec = VRVQCodec(str(out))
    codec.load()
    return model, codec


def test_config_recovered(converted: tuple[VRVQ, VRVQCodec]) -> None:
    model, codec = converted
    assert codec.config == replace(model.vrvq_config,
                                   importance_widths=model.vrvq_config.resolved_importance_widths())


@pytest.mark.parametrize("op", ["n2", "L2"])
def test_codes_and_audio_identical(converted: tuple[VRVQ, VRVQCodec], op: str) -> None:
    model, codec = converted
    torch.manual_seed(1)
    wav = torch.randn(2, 1, 1800) * 0.1
    enc = codec.encode(wav, op)
    params = codec.resolve_op(op).params
    with torch.no_grad():
        if "level" in params:
            codes, counts = model.encode_frames(wav, level=float(params["level"]))
        else:
            codes, counts = model.encode_frames(wav, n_codebooks=int(params["n_codebooks"]))
        audio = model.decode_frames(codes, counts, wav.shape[-1]).float()
    assert torch.equal(enc.payload["codes"], codes) and torch.equal(enc.payload["counts"], counts)
    assert torch.equal(codec.decode(enc), audio)


def test_not_a_vrvq_release(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(UserError, match="model_state_dict"):
        convert_vrvq_release(path, tmp_path / "x.safetensors")


def test_convert_through_the_command_line(converted: tuple[VRVQ, VRVQCodec], tmp_path: Path) -> None:
    """``bench weights convert --model vrvq`` writes the same checkpoint the function does."""
    from bench.cli import main

    model, codec = converted
    release = Path(str(codec.checkpoint)).parent / "vrvq_release.pth"
    out = tmp_path / "cli.safetensors"
    assert main(["weights", "convert", str(release), "--out", str(out), "--model", "vrvq", "--sample-rate", "16000"]) == 0
    again = VRVQCodec(str(out)).load()
    wav = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(1)) * 0.1
    assert again.to_bytes(again.encode(wav, "n2")) == codec.to_bytes(codec.encode(wav, "n2"))
