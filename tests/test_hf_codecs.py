"""EnCodec 24/48 kHz and Mimi through transformers, on tiny random-init models saved with save_pretrained.

The widths and layers are shrunk; the sample rates, hop lengths, codebook sizes and bandwidths (what
sets the bitrate) are the published ones. Nothing is downloaded.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from bench.codecs.base import BitstreamError  # noqa: E402
from bench.codecs.encodec import Encodec48Codec, EncodecCodec  # noqa: E402
from bench.codecs.mimi import MimiCodec  # noqa: E402
from bench.errors import UserError  # noqa: E402
from bench.hub import resolve_weights  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_ENCODEC = dict(num_filters=4, hidden_size=16, codebook_dim=16, num_lstm_layers=1, num_residual_layers=1)
SMALL_MIMI = dict(hidden_size=32, num_filters=4, codebook_dim=16, vector_quantization_hidden_dimension=16,
                  num_hidden_layers=1, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2,
                  head_dim=16, upsample_groups=32)


def _build(kind: str, folder: Path) -> Path:
    """A random-init model of ``kind`` saved into ``folder``."""
    torch.manual_seed(0)
    if kind == "encodec":
        model = transformers.EncodecModel(transformers.EncodecConfig(**SMALL_ENCODEC))
    elif kind == "encodec48":
        model = transformers.EncodecModel(transformers.EncodecConfig(
            sampling_rate=48_000, audio_channels=2, chunk_length_s=1.0, overlap=0.01, normalize=True,
            target_bandwidths=[3.0, 6.0, 12.0, 24.0], **SMALL_ENCODEC))
    else:
        model = transformers.MimiModel(transformers.MimiConfig(**SMALL_MIMI))
    model.save_pretrained(str(folder))
    return folder


CASES = {"encodec": (EncodecCodec, 6.0), "encodec48": (Encodec48Codec, 4.0), "mimi": (MimiCodec, 6.0)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: _build(kind, root / kind) for kind in CASES}


def _wav(codec, seconds: float, batch: int = 2) -> torch.Tensor:
    spec = codec.spec
    g = torch.Generator().manual_seed(1)
    n = int(seconds * spec.sample_rate_hz) + 77  # not a whole number of frames or chunks
    return 0.1 * torch.randn(batch, spec.channels, n, generator=g)


EXPECTED_POINTS = {"encodec": {"1.5": 1.5, "3": 3.0, "6": 6.0, "12": 12.0, "24": 24.0},
                   "encodec48": {"3": 3.0, "6": 6.0, "12": 12.0, "24": 24.0},
                   "mimi": {"8": 1.1, "16": 2.2, "32": 4.4}}


@pytest.mark.parametrize("kind", list(CASES))
def test_contract(kind: str, folders: dict[str, Path]) -> None:
    cls, seconds = CASES[kind]
    codec = cls(checkpoint=str(folders[kind])).load()
    assert {p.name: p.nominal_kbps for p in codec.spec.operating_points} == EXPECTED_POINTS[kind]
    wav = _wav(codec, seconds)
    duration_s = wav.shape[-1] / codec.spec.sample_rate_hz
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


def _reference(kind: str, model, wav: torch.Tensor, codec) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own encode/decode at the codec's full depth."""
    with torch.inference_mode():
        if kind == "mimi":
            codes = model.encode(wav, num_quantizers=32).audio_codes
            return codes, model.decode(codes).audio_values
        out = model.encode(wav, bandwidth=24.0)
        audio = model.decode(out.audio_codes, out.audio_scales, last_frame_pad_length=out.last_frame_pad_length)
        return out.audio_codes, audio.audio_values


@pytest.mark.parametrize("kind", list(CASES))
def test_matches_transformers(kind: str, folders: dict[str, Path]) -> None:
    cls, _ = CASES[kind]
    codec = cls(checkpoint=str(folders[kind])).load()
    wav = _wav(codec, 2.5, batch=1)
    model = getattr(transformers, cls.model_class).from_pretrained(str(folders[kind])).eval()
    ref_codes, ref_audio = _reference(kind, model, wav, codec)
    enc = codec.from_bytes(codec.to_bytes(codec.encode(wav, codec.spec.operating_points[-1])))
    got = enc.payload.codes[0] if kind == "mimi" else enc.payload.codes
    assert torch.equal(got, ref_codes)
    assert torch.equal(codec.decode(enc), ref_audio[..., : wav.shape[-1]].float())


def test_fingerprint_has_weights_and_transformers(folders: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    a = EncodecCodec(checkpoint=str(folders["encodec"]))
    info = a.fingerprint_info()
    assert info["packages"]["transformers"] == transformers.__version__
    assert len(info["weights"]) == 64
    other = shutil.copytree(folders["encodec"], tmp_path / "other")
    assert EncodecCodec(checkpoint=str(other)).fingerprint == a.fingerprint  # same weights, other folder
    torch.manual_seed(5)
    transformers.EncodecModel(transformers.EncodecConfig(**SMALL_ENCODEC)).save_pretrained(str(other))
    assert EncodecCodec(checkpoint=str(other)).fingerprint != a.fingerprint


def test_weights_errors(folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match="bench weights fetch nobody/nothing"):
        resolve_weights("nobody/nothing", "facebook/encodec_24khz")
    with pytest.raises(UserError, match="does not exist.*bench weights fetch"):
        resolve_weights(str(tmp_path / "missing"), "facebook/encodec_24khz")
    pickle_only = tmp_path / "pickle"
    pickle_only.mkdir()
    (pickle_only / "config.json").write_text("{}")
    (pickle_only / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="pickle"):
        resolve_weights(str(pickle_only), "facebook/encodec_24khz")
    with pytest.raises(UserError, match="needs encodec at 24000 Hz"):
        _ = EncodecCodec(checkpoint=str(folders["mimi"])).spec


def test_hub_id_from_cache(folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id resolves offline from a cache laid out as huggingface_hub writes it."""
    import shutil

    from huggingface_hub import constants

    from bench.hub import cached_snapshot

    cache = tmp_path / "hub"
    repo = cache / "models--facebook--encodec_24khz"
    commit = "0" * 40
    shutil.copytree(folders["encodec"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert cached_snapshot("facebook/encodec_24khz") == repo / "snapshots" / commit
    assert resolve_weights("facebook/encodec_24khz", "facebook/encodec_24khz") == repo / "snapshots" / commit
    assert EncodecCodec().spec.sample_rate_hz == 24_000  # the default hub id, from the cache


def _write_wavs(root: Path, n: int = 2) -> None:
    import soundfile as sf

    (root / "speech").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / "speech" / f"clip{i}.wav", (0.1 * rng.standard_normal(24_000)).astype(np.float32), 24_000)


def test_bench_run_end_to_end(folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from huggingface_hub import constants

    from bench.cli import main

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    _write_wavs(tmp_path / "audio")
    out = tmp_path / "run"
    common = ["--dataset", "folder", "--root", str(tmp_path / "audio"), "--metrics", "si_sdr", "--workers", "1",
              "--no-progress", "--out", str(out)]
    assert main(["run", "--codecs", f"encodec:{folders['encodec']}@1.5,encodec:{folders['encodec']}@6",
                 *common]) == 0
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT status, measured_kbps FROM results").fetchall()
    con.close()
    assert len(rows) == 4 and all(status == "ok" for status, _ in rows)
    capsys.readouterr()
    for codecs in (f"encodec:{tmp_path / 'nowhere'}", "mimi:nobody/nothing", "encodec48"):
        assert main(["run", "--codecs", codecs, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "bench weights fetch" in err, err


def test_weights_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    import bench.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "weights", ("bench.cli.weights", "fetch or list published codecs' weights"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert cli.main(["weights", "ls"]) == 0
    listing = capsys.readouterr().out
    assert "facebook/encodec_24khz" in listing and "kyutai/mimi" in listing and "missing" in listing
    assert cli.main(["ls", "codecs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "unavailable" in lines["mimi"] and "bench weights fetch kyutai/mimi" in lines["mimi"]
    assert cli.main(["weights", "fetch", "not an id"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err

    def offline(*args: object, **kwargs: object) -> str:
        raise huggingface_hub.errors.LocalEntryNotFoundError("no network")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert cli.main(["weights", "fetch", "facebook/encodec_24khz", "--revision", "main"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not fetch 'facebook/encodec_24khz'" in err
