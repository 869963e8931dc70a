"""X-codec through transformers, on a tiny random-init model saved with save_pretrained.

The widths and layers (DAC acoustic model, HuBERT semantic model) are shrunk; the sample rate, hop
length (the HuBERT and DAC strides), codebook size and target bandwidths (what sets the bitrate) are
the published ones. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from bench.codecs.base import BitstreamError  # noqa: E402
from bench.codecs.xcodec import XcodecCodec  # noqa: E402
from bench.errors import UserError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_ACOUSTIC = dict(encoder_hidden_size=4, decoder_hidden_size=16, hidden_size=16, codebook_dim=8, n_codebooks=1)
SMALL_SEMANTIC = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                      conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny XcodecModel saved into a temporary folder."""
    torch.manual_seed(0)
    config = transformers.XcodecConfig(acoustic_model_config=SMALL_ACOUSTIC, semantic_model_config=SMALL_SEMANTIC)
    path = tmp_path_factory.mktemp("xcodec") / "tiny"
    transformers.XcodecModel(config).save_pretrained(str(path))
    return path


def _wav(seconds: float, batch: int = 2) -> torch.Tensor:
    """Noise of ``seconds`` at 16 kHz plus 77 samples (not a whole number of frames)."""
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(batch, 1, int(seconds * 16_000) + 77, generator=g)


def test_contract(folder: Path) -> None:
    codec = XcodecCodec(checkpoint=str(folder))
    codec.load()
    assert {p.name: p.nominal_kbps for p in codec.spec.operating_points} == {
        "0.5": 0.5, "1": 1.0, "1.5": 1.5, "2": 2.0, "4": 4.0}
    assert [codec.n_codebooks(p) for p in codec.spec.operating_points] == [1, 2, 3, 4, 8]
    wav = _wav(3.0, batch=4)  # at 0.5 kbps the ~25-byte header needs 4 x 3 s to stay within 5%
    duration_s = wav.shape[-1] / 16_000
    for op in codec.spec.operating_points:
        enc = codec.encode(wav, op)
        data = codec.to_bytes(enc)
        back = codec.from_bytes(data)
        assert torch.equal(back.payload.codes, enc.payload.codes)
        measured_kbps = len(data) * 8 / duration_s / 1000 / wav.shape[0]
        assert abs(measured_kbps / op.nominal_kbps - 1) < 0.05, (op.name, measured_kbps)
        direct = codec.encode_direct(wav, codec.n_codebooks(op))
        assert torch.equal(direct.codes, enc.payload.codes), f"prefix slicing differs at {op.name}"
        out = codec.decode(back)
        assert out.shape == wav.shape and torch.isfinite(out).all()
    with pytest.raises(BitstreamError, match="truncated"):
        codec.from_bytes(data[:-1])


def test_matches_transformers(folder: Path) -> None:
    codec = XcodecCodec(checkpoint=str(folder))
    codec.load()
    wav = _wav(2.0, batch=1)
    model = transformers.XcodecModel.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        ref_codes = model.encode(wav, bandwidth=4.0).audio_codes
        ref_audio = model.decode(ref_codes).audio_values
    enc = codec.from_bytes(codec.to_bytes(codec.encode(wav, "4")))
    assert torch.equal(enc.payload.codes[0], ref_codes)
    out = codec.decode(enc)
    n = min(wav.shape[-1], ref_audio.shape[-1])
    assert torch.equal(out[..., :n], ref_audio[..., :n].float())
    assert out.shape == wav.shape


def test_rejects_other_model(folder: Path, tmp_path: Path) -> None:
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "sample_rate": 24_000}))
    with pytest.raises(UserError, match="16000 Hz"):
        XcodecCodec(checkpoint=str(other)).spec
