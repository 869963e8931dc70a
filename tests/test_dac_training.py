"""DAC training pieces: a tiny model's loss falls with generator and discriminator both stepping,
checkpoints are safetensors-only with a checked card, save/load is exact, the data pipeline holds out
and balances as documented, and ``bench train dac`` runs, saves and resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.models.dac_model import CONFIGS, DAC
from bench.models.checkpoint import CheckpointError, load_checkpoint, module_tensors, save_checkpoint
from bench.train.dac import DACTrainer
from bench.train.data import AudioFile, ExcerptSampler, phase_shift, split_holdout
from bench.train.discriminators import Discriminator, DiscriminatorConfig
from bench.train.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from shared_paths import SHARED_AUDIO

torch.set_num_threads(1)
CLIP = SHARED_AUDIO / "train" / "speech" / "vctk-p239" / "p239_004.flac"


def _one_clip(sample_rate_hz: int, duration_s: float = 0.38) -> torch.Tensor:
    """A loud part of a real utterance if ../shared is there, else a harmonic tone with vibrato."""
    n = int(duration_s * sample_rate_hz)
    if CLIP.exists():
        from bench.train.data import read_mono

        f = AudioFile(str(CLIP), "speech", "x", 5.0, 48000, 1)
        x = read_mono(f, sample_rate_hz, 1.0, duration_s)
    else:
        t = np.arange(n) / sample_rate_hz
        x = sum(np.sin(2 * np.pi * 180 * k * t + 3 * np.sin(2 * np.pi * 5 * t)) / k for k in range(1, 6))
    x = 0.5 * x / (np.abs(x).max() + 1e-9)
    return torch.from_numpy(np.asarray(x, dtype=np.float32))[None, None, :n]


def test_tiny_model_loss_falls_with_both_players_stepping():
    torch.manual_seed(0)
    cfg = CONFIGS["tiny"]
    small_disc = DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 4), fft_sizes=(256,), mrd_channels=2)
    gen, disc = DAC(cfg), Discriminator(small_disc)
    trainer = DACTrainer(gen, disc, sample_rate_hz=cfg.sample_rate_hz, n_codebooks=cfg.n_codebooks, lr=2e-3)
    real = _one_clip(cfg.sample_rate_hz, duration_s=0.2)
    g0 = {k: v.clone() for k, v in gen.state_dict().items()}
    d0 = {k: v.clone() for k, v in disc.state_dict().items()}
    mels = []
    for _ in range(25):
        values = trainer.step(real)
        mels.append(values["loss/mel"])
        assert all(math.isfinite(v) for v in values.values())
    assert np.mean(mels[-5:]) < 0.8 * np.mean(mels[:5]), mels
    assert any(not torch.equal(g0[k], v) for k, v in gen.state_dict().items())
    assert any(not torch.equal(d0[k], v) for k, v in disc.state_dict().items())
    assert trainer.sched_g.get_last_lr()[0] == pytest.approx(2e-3 * 0.999996 ** 25)


def test_discriminators_return_feature_maps_and_logits():
    torch.manual_seed(0)
    cfg = DiscriminatorConfig(periods=(2, 3, 5, 7, 11), mpd_channels=(4, 8), fft_sizes=(2048, 1024, 512),
                              mrd_channels=4)
    disc = Discriminator(cfg)
    x = 0.1 * torch.randn(2, 1, 4000)
    maps = disc(x)
    assert len(maps) == 5 + 3
    for m in maps[:5]:
        assert len(m) == 3 and m[-1].shape[1] == 1
    for m in maps[5:]:
        assert len(m) == 5 * 5 + 1  # 5 bands x 5 convs, then the logits
    assert discriminator_loss(maps, maps) > 0
    assert feature_matching_loss(maps, maps) == 0
    assert generator_adversarial_loss(maps) > 0
    # the published discriminator is the large one (~42 M parameters with 1024-channel MPD layers)
    with torch.device("meta"):
        assert sum(p.numel() for p in Discriminator().parameters()) > 30e6


def test_save_load_is_exact_and_half_is_close(tmp_path):
    torch.manual_seed(0)
    model = DAC(CONFIGS["tiny"]).eval()
    card = {"model": "dac", "config": CONFIGS["tiny"].to_dict()}
    path = save_checkpoint(tmp_path / "m.safetensors", module_tensors("generator", model), card)
    tensors, loaded_card = load_checkpoint(path, model="dac")
    assert loaded_card["weights_sha256"] and loaded_card["format"] == "bench-checkpoint"
    again = DAC(CONFIGS["tiny"]).eval()
    from bench.models.checkpoint import load_module

    load_module(again, tensors, "generator")
    x = 0.1 * torch.randn(1, 1, 1000)
    with torch.no_grad():
        assert torch.equal(model(x, n_codebooks=4).audio, again(x, n_codebooks=4).audio)
        assert torch.equal(model.encode(x, 4), again.encode(x, 4))
    half = save_checkpoint(tmp_path / "h", module_tensors("generator", model), card, half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    t_half, c_half = load_checkpoint(half)
    assert c_half["weights_dtype"] == "float16" and t_half["generator.encoder.body.0.bias"].dtype == torch.float32


def test_non_safetensors_and_bad_cards_are_refused(tmp_path):
    torch.manual_seed(0)
    model = DAC(CONFIGS["tiny"])
    pickle_path = tmp_path / "model.pt"
    torch.save(model.state_dict(), pickle_path)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(pickle_path)
    disguised = tmp_path / "disguised.safetensors"
    disguised.write_bytes(pickle_path.read_bytes())
    (tmp_path / "disguised.json").write_text(json.dumps({"format": "bench-checkpoint", "model": "dac"}))
    with pytest.raises(CheckpointError, match="PyTorch pickle"):
        load_checkpoint(disguised)
    good = save_checkpoint(tmp_path / "good", module_tensors("generator", model),
                           {"model": "dac", "config": CONFIGS["tiny"].to_dict()})
    with pytest.raises(CheckpointError, match="not 'vrvq'|not .vrvq."):
        load_checkpoint(good, model="vrvq")
    raw = bytearray(good.read_bytes())
    raw[-1] ^= 0xFF
    good.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(good)
    (tmp_path / "good.json").unlink()
    with pytest.raises(CheckpointError, match="no card"):
        load_checkpoint(good)


def test_phase_shift_is_a_constant_phase_rotation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    x -= x.mean()
    assert np.allclose(phase_shift(x, 0.0), x, atol=1e-5)
    assert np.allclose(phase_shift(x, math.pi), -x, atol=1e-4)  # pi: polarity inversion
    y = phase_shift(x, 1.0)
    assert np.allclose(np.abs(np.fft.rfft(y))[1:-1], np.abs(np.fft.rfft(x))[1:-1], rtol=1e-3, atol=1e-3)
    assert not np.allclose(y, x, atol=1e-2)


def _files(group: str, n: int, stems: int = 0) -> list[AudioFile]:
    out = [AudioFile(f"/d/{group}/f{i}.wav", group, f"{group}/f{i}.wav", 5.0, 16000, 1) for i in range(n)]
    for s in range(stems):
        out += [AudioFile(f"/d/{group}/song{s}/{stem}.ogg", group, f"{group}/song{s}", 100.0, 44100, 2)
                for stem in ("guitar", "song")]
    return out


def test_holdout_is_deterministic_disjoint_and_keeps_stems_together():
    files = _files("speech", 200) + _files("music", 0, stems=4) + _files("general", 50)
    train, val = split_holdout(files, fraction=0.02)
    train2, val2 = split_holdout(list(reversed(files)), fraction=0.02)
    assert sorted(f.path for f in val) == sorted(f.path for f in val2)
    assert not {f.path for f in train} & {f.path for f in val}
    assert {f.group for f in val} == {"speech", "music", "general"}
    held_music = [f for f in val if f.group == "music"]
    assert len(held_music) == 2 and len({f.unit for f in held_music}) == 1  # both stems of one song
    assert len([f for f in val if f.group == "speech"]) == 4


def test_batches_see_every_group():
    files = _files("speech", 5) + _files("music", 3) + _files("general", 4)
    sampler = ExcerptSampler(files, 16000, seed=3)
    for _ in range(20):
        assert set(sampler.batch_groups(4)) == {"speech", "music", "general"}


def _write_folder(root: Path) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(int(1.5 * sr)) / sr
    for group in ("speech", "music"):
        (root / group).mkdir(parents=True)
        for i in range(3):
            f0 = 150 * (i + 1) if group == "speech" else 440 * (i + 1)
            x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(root / group / f"clip{i}.wav", x.astype(np.float32), sr)


def test_bench_train_dac_runs_saves_and_resumes(tmp_path):
    from bench.cli import main

    data, out = tmp_path / "data", tmp_path / "out"
    _write_folder(data)
    common = ["train", "dac", "--config", "tiny", "--data", str(data), "--out", str(out), "--num-threads", "1",
              "--checkpoint-every", "2", "--validate-every", "2", "--log-every", "1", "--val-per-group", "1",
              "--val-duration-s", "1.0", "--batch-size", "2"]
    assert main(common + ["--steps", "2"]) == 0
    card = json.loads((out / "dac_tiny.json").read_text())
    assert card["training"]["steps"] == 2 and card["model"] == "dac"
    assert set(card["validation"]["per_n_codebooks"]) == {"1", "2", "3", "4"}
    assert (out / "train_state.safetensors").exists() and (out / "holdout.json").exists()
    assert main(common + ["--steps", "3", "--resume"]) == 0
    card = json.loads((out / "dac_tiny.json").read_text())
    assert card["training"]["steps"] == 3
    log_steps = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert log_steps == [1, 2, 3]
    # the exported checkpoint is what --codecs dac:PATH loads
    from bench.codecs.dac import DACCodec

    codec = DACCodec(checkpoint=str(out / "dac_tiny.safetensors")).load()
    assert codec.spec.sample_rate_hz == 16000 and len(codec.spec.operating_points) == 4


def test_unknown_model_is_a_clear_error(capsys):
    from bench.cli import main

    assert main(["train", "dacc", "--config", "tiny"]) == 2
    assert "did you mean 'dac'" in capsys.readouterr().err.lower()


def test_warm_up_without_discriminator_leaves_it_untouched():
    torch.manual_seed(0)
    cfg = CONFIGS["tiny"]
    disc = Discriminator(DiscriminatorConfig(periods=(2,), mpd_channels=(4,), fft_sizes=(256,), mrd_channels=2))
    trainer = DACTrainer(DAC(cfg), disc, sample_rate_hz=cfg.sample_rate_hz, n_codebooks=cfg.n_codebooks)
    d0 = {k: v.clone() for k, v in disc.state_dict().items()}
    values = trainer.step(_one_clip(cfg.sample_rate_hz, 0.1), adversarial=False)
    assert "loss/adversarial" not in values and "loss/discriminator" not in values
    assert all(torch.equal(d0[k], v) for k, v in disc.state_dict().items())
    assert trainer.sched_d.last_epoch == trainer.sched_g.last_epoch == 1


def test_complex_stft_term_sees_the_phase_that_mel_ignores():
    from bench.metrics.mel import MultiScaleMelDistance
    from bench.train.losses import LossWeights, complex_stft_loss

    x = _one_clip(24000, 0.38)
    flipped, late = -x, torch.roll(x, 7, dims=-1)
    mel = MultiScaleMelDistance(sample_rate_hz=24000)
    assert complex_stft_loss(x, x).item() == 0.0
    assert mel(flipped, x).item() < 1e-4  # the mel distance cannot tell a sign flip ...
    assert complex_stft_loss(flipped, x).item() > 0.1  # ... the complex-STFT term can
    assert complex_stft_loss(late, x).item() > 0.05
    assert complex_stft_loss(flipped, x).item() > complex_stft_loss(0.9 * x, x).item()
    # off by default (DAC's recipe); on, it is a logged, weighted generator term
    cfg = CONFIGS["tiny"]
    disc = Discriminator(DiscriminatorConfig(periods=(2,), mpd_channels=(4,), fft_sizes=(256,), mrd_channels=2))
    off = DACTrainer(DAC(cfg), disc, sample_rate_hz=cfg.sample_rate_hz, n_codebooks=cfg.n_codebooks)
    assert "loss/phase" not in off.step(_one_clip(cfg.sample_rate_hz, 0.1), adversarial=False)
    on = DACTrainer(DAC(cfg), disc, sample_rate_hz=cfg.sample_rate_hz, n_codebooks=cfg.n_codebooks,
                    weights=LossWeights(phase=30.0))
    values = on.step(_one_clip(cfg.sample_rate_hz, 0.1), adversarial=False)
    assert values["loss/phase"] > 0 and math.isfinite(values["loss/generator"])
