"""Our DAC with published-layout weights against transformers' DacModel, and the original-release converter.

The transformers models are random-init (nothing can be downloaded here) with small widths but the
published rates (16 kHz: 2,4,5,8 / hop 320; 44.1 kHz: 2,4,8,8 / hop 512). Their convs are re-drawn
with PyTorch's default init and the codebooks with unit variance, so signals and codes are not
degenerate (transformers' std-0.02 init gives near-silent outputs and a single code).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from bench.models.checkpoint import load_checkpoint, load_module, read_card, sha256_file  # noqa: E402
from bench.models.dac_convert import (  # noqa: E402
    WN_G,
    WN_V,
    config_from_hf,
    convert_original_release,
    load_hf_folder,
    state_dict_from_hf,
)
from bench.models.dac_model import DAC, DACConfig  # noqa: E402

PUBLISHED = {  # (sampling rate, downsampling ratios, n_codebooks) of descript/dac_16khz and dac_44khz
    "16k": (16000, [2, 4, 5, 8], 12),
    "44k": (44100, [2, 4, 8, 8], 9),
}


def _hf_model(name: str, seed: int = 0) -> Any:
    """A random transformers DacModel with a published rate structure and small widths."""
    rate, ratios, n_q = PUBLISHED[name]
    cfg = transformers.DacConfig(encoder_hidden_size=8, decoder_hidden_size=64, downsampling_ratios=ratios,
                                 n_codebooks=n_q, codebook_size=64, codebook_dim=8, sampling_rate=rate)
    torch.manual_seed(seed)
    model = transformers.DacModel(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                m.reset_parameters()
            elif isinstance(m, nn.Embedding):
                m.weight.normal_()
            elif hasattr(m, "alpha"):
                m.alpha.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", ["16k", "44k"])
def test_hf_folder_matches_dacmodel(tmp_path: Path, name: str) -> None:
    """Codes identical for every codebook count and reconstruction within 1e-4 of DacModel's."""
    hf = _hf_model(name)
    hf.save_pretrained(tmp_path)
    ours = load_hf_folder(tmp_path)
    assert ours.config.hop_length == hf.config.hop_length
    assert ours.config.n_codebooks == hf.config.n_codebooks
    torch.manual_seed(1)
    wav = 0.5 * torch.randn(2, 1, hf.config.hop_length * 3)
    with torch.no_grad():
        for n in range(1, hf.config.n_codebooks + 1):
            ref_codes = hf.encode(wav, n_quantizers=n).audio_codes
            codes = ours.encode(wav, n)
            assert torch.equal(codes, ref_codes), f"codes differ at n={n}"
            ref = hf.decode(audio_codes=ref_codes).audio_values
            out = ours.decode(codes)[:, 0]
            assert out.shape == ref.shape
            assert (out - ref).abs().max().item() < 1e-4
        assert codes.unique().numel() > 8  # the check is not vacuous
        assert ref.abs().max().item() > 1e-2
        # asking for the input length pads the released decoder's few missing samples with zeros
        assert ours.decode(codes, wav.shape[-1]).shape[-1] == wav.shape[-1]


def test_weight_norm_forms_map_alike() -> None:
    """Plain weights, parametrizations.original0/1 and legacy weight_g/weight_v give the same model."""
    hf = _hf_model("16k")
    plain = state_dict_from_hf(hf.state_dict())
    hf.apply_weight_norm()
    param = hf.state_dict()
    assert any(k.endswith("parametrizations.weight.original0") for k in param)
    legacy = {k.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): v for k, v in param.items()}
    ours = DAC(config_from_hf(hf.config)).eval()
    ours.load_state_dict(state_dict_from_hf(param))
    assert state_dict_from_hf(legacy).keys() == plain.keys() == set(ours.state_dict())
    for key, v in state_dict_from_hf(legacy).items():
        torch.testing.assert_close(v, param_or_plain(plain, key, v))


def param_or_plain(plain: dict[str, torch.Tensor], key: str, v: torch.Tensor) -> torch.Tensor:
    """The plain-weight mapping of ``key``, compared as the effective conv weight for g/v pairs."""
    if key.endswith(WN_V):  # v is only defined up to scale: compare directions
        return plain[key] / plain[key].flatten(1).norm(dim=1)[:, None, None] * v.flatten(1).norm(dim=1)[:, None, None]
    return plain[key]


def _to_original_layout(model: DAC) -> dict[str, torch.Tensor]:
    """Our state dict renamed into descript-audio-codec's (``encoder.block.*``, ``weight_g``/``weight_v``).

    The original encoder is one Sequential: input conv, the strided blocks, Snake, output conv; our
    ``body``/``head`` split is undone here, and the parametrised weights are renamed to the old
    weight-norm hook's names. This is how a release ``.pth`` lays out its ``state_dict``.
    """
    n_body = len(model.encoder.body)
    out: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        key = key.replace(WN_G, ".weight_g").replace(WN_V, ".weight_v")
        if key.startswith("encoder.body."):
            key = "encoder.block." + key[len("encoder.body."):]
        elif key.startswith("encoder.head."):
            i, rest = key[len("encoder.head."):].split(".", 1)
            key = f"encoder.block.{n_body + int(i)}.{rest}"
        out[key] = t.clone()
    return out


def test_convert_original_release(tmp_path: Path) -> None:
    """A synthetic release file (our random weights in the original layout) converts bit-exactly."""
    cfg = DACConfig(16000, 4, (2, 4, 5, 8), 0, 32, (8, 5, 4, 2), 3, 64, 4, 0.0, odd_stride_output_padding=False)
    torch.manual_seed(0)
    model = DAC(cfg).eval()
    kwargs = {"encoder_dim": 4, "encoder_rates": [2, 4, 5, 8], "latent_dim": None, "decoder_dim": 32,
              "decoder_rates": [8, 5, 4, 2], "n_codebooks": 3, "codebook_size": 64, "codebook_dim": 4,
              "quantizer_dropout": False, "sample_rate": 16000}
    pth = tmp_path / "weights_16khz.pth"
    torch.save({"state_dict": _to_original_layout(model), "metadata": {"kwargs": kwargs}}, pth)
    out = convert_original_release(pth, tmp_path / "dac_16khz")
    card = read_card(out)
    assert card["model"] == "dac" and card["source"]["sha256"] == sha256_file(pth)
    assert DACConfig.from_dict(card["config"]) == replace(cfg, latent_dim=cfg.effective_latent_dim)
    tensors, _ = load_checkpoint(out, model="dac")
    loaded = DAC(DACConfig.from_dict(card["config"])).eval()
    load_module(loaded, tensors, "generator")
    wav = torch.randn(1, 1, 320 * 5)
    codes = model.encode(wav, 3)
    assert torch.equal(loaded.encode(wav, 3), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))
    assert json.loads(out.with_suffix(".json").read_text())["source"]["file"] == "weights_16khz.pth"
    # the same through the command line, and the result runs through the dac codec
    from bench.cli import main
    from bench.codecs.dac import DACCodec

    cli_out = tmp_path / "cli" / "dac_16khz.safetensors"
    assert main(["weights", "convert", str(pth), "--out", str(cli_out)]) == 0
    codec = DACCodec(checkpoint=str(cli_out)).load("cpu")
    assert torch.equal(codec.encode(wav, "3").payload, codes)


def test_default_config_card_unchanged() -> None:
    """The new option stays out of cards at its default, so existing cards and fingerprints are unchanged."""
    assert "odd_stride_output_padding" not in DACConfig().to_dict()
    released = DACConfig(odd_stride_output_padding=False)
    assert DACConfig.from_dict(released.to_dict()) == released


def test_published_dac_folder_through_the_codec_and_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--codecs dac:FOLDER`` (a save_pretrained folder) runs our DAC with the mapped weights, end to end,
    next to ``encodec:FOLDER``; a missing folder is one line naming ``bench weights fetch``."""
    import sqlite3

    from huggingface_hub import constants
    from test_hf_codecs import _build, _write_wavs

    from bench.cli import main
    from bench.codecs.dac import DACCodec

    hf = _hf_model("16k")
    folder = tmp_path / "dac16"
    hf.save_pretrained(folder)
    codec = DACCodec(checkpoint=str(folder)).load("cpu")
    x = torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        enc = codec.encode(x, "12")
        ours = codec.decode(codec.from_bytes(codec.to_bytes(enc)))
        theirs = hf.decode(audio_codes=hf.encode(x, n_quantizers=12).audio_codes).audio_values
    n = min(ours.shape[-1], theirs.shape[-1])
    assert ours.shape[-1] == x.shape[-1]
    assert float((ours[..., :n].reshape(-1) - theirs.reshape(-1)[:n]).abs().max()) < 1e-4
    assert codec.spec.sample_rate_hz == 16000 and codec.checkpoint_hash != "none"

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    encodec = _build("encodec", tmp_path / "encodec")
    _write_wavs(tmp_path / "audio")
    out = tmp_path / "run"
    common = ["--dataset", "folder", "--root", str(tmp_path / "audio"), "--metrics", "si_sdr", "--workers", "1",
              "--no-progress", "--out", str(out)]
    assert main(["run", "--codecs", f"encodec:{encodec}@6,dac:{folder}@12", *common]) == 0
    with sqlite3.connect(out / "results.sqlite") as con:
        rows = con.execute("SELECT codec, status FROM results").fetchall()
    assert len(rows) == 4 and all(status == "ok" for _, status in rows)
    assert {c.split(":")[0] for c, _ in rows} == {"encodec", "dac"}
    capsys.readouterr()
    assert main(["run", "--codecs", "dac:nobody/no_such_dac", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bench weights fetch" in err, err
