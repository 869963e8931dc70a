"""EuleroDec model: STFT front end, frame rates and bitrates, shapes, learning, exact save/load."""

from __future__ import annotations

import math

import pytest
import torch

from bench.models.eulerodec_model import (CONFIGS, EuleroDec, STFTFrontend, get_config, load_model_state,
                                             model_state_for_saving)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    """Harmonic tone with vibrato plus a little noise, [1, 1, n] at 24 kHz."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 24000.0
    f0 = 140 + 20 * torch.sin(2 * math.pi * 3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / 24000.0
    x = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.2 + 0.01 * torch.randn(n, generator=g)
    return x.view(1, 1, n).float()


@pytest.mark.parametrize("num_samples", [7680, 12345, 1000])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_stft_then_istft_reconstructs(num_samples, alpha):
    fe = STFTFrontend(512, 64, 8, alpha)
    x = _speechlike(num_samples)
    spec_c = fe.analyse(x)
    assert spec_c.dtype == torch.complex64 and spec_c.shape[2] == 256
    assert spec_c.shape[-1] % 8 == 0 and spec_c.shape[-1] == fe.padded_length(num_samples) // 64
    y = fe.synthesise(spec_c, num_samples)
    assert y.shape == x.shape
    assert (y - x).abs().max() < 1e-3  # only the (dropped) Nyquist bin is lost
    # without the Nyquist drop the plain STFT pair is exact to float precision
    assert (fe.istft(fe.stft(x), num_samples) - x).abs().max() < 1e-5


def test_frame_rates_and_bitrates():
    for name, fps, kbps in [("small6", 46.875, 6.1875), ("6kbps", 46.875, 6.1875),
                            ("small12", 93.75, 12.375), ("12kbps", 93.75, 12.375)]:
        cfg = get_config(name)
        assert cfg.frame_rate_hz == fps
        assert cfg.nominal_kbps() == kbps
        assert cfg.num_quantizers == 12 and cfg.codebook_size == 2048 and cfg.bits_per_code == 11
        assert cfg.n_fft == 512 and cfg.hop_length == 64 and cfg.sample_rate_hz == 24000
        assert cfg.nominal_kbps(4) == pytest.approx(kbps / 3)
    assert get_config("small6").time_downsample == 8 and get_config("small12").time_downsample == 4


def test_config_round_trip_and_errors():
    cfg = get_config("small12")
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(KeyError, match="unknown EuleroDec config"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown EuleroDec config keys"):
        type(cfg).from_dict({**cfg.to_dict(), "bogus": 1})


def test_paper_size_configs_build_and_small_ones_fit_10_mb():
    torch.manual_seed(0)
    for name in ("6kbps", "12kbps"):
        model = EuleroDec(get_config(name))
        assert 5e6 < model.num_parameters() < 5e7
    for name in ("small6", "small12"):
        cfg = get_config(name)
        model = EuleroDec(cfg)
        size_fp16 = 2 * sum(t.numel() * (2 if t.is_complex() else 1) for t in model_state_for_saving(model).values())
        assert size_fp16 < 10e6, f"{name}: {size_fp16 / 1e6:.1f} MB"


@pytest.mark.parametrize("name", ["tiny"])
def test_shapes_codes_and_encode_decode_match_forward(name):
    torch.manual_seed(0)
    model = EuleroDec(get_config(name))
    x = _speechlike(5000)
    model.train()
    model(x)  # one step of EMA/BN statistics
    model.eval()
    out = model(x)
    frames = model.latent_frames(5000)
    assert out.wav.shape == x.shape and out.codes.shape == (1, 12, frames)
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < model.cfg.codebook_size
    codes = model.encode(x)
    assert torch.equal(codes, out.codes)
    # forward's straight-through sum and decode's plain sum differ by float rounding only
    assert (model.decode(codes, 5000) - out.wav).abs().max() <= 1e-4 * out.wav.abs().max()
    assert model.encode(x, 3).shape == (1, 3, frames)
    with pytest.raises(ValueError, match="code frames"):
        model.decode(codes[..., :-1], 5000)
    with pytest.raises(RuntimeError, match="eval"):
        model.train().encode(x)
    with pytest.raises(ValueError, match="mono"):
        model(torch.zeros(1, 2, 5000))


def test_tiny_model_loss_falls():
    from bench.train.eulerodec import EuleroDecTrainer

    torch.manual_seed(0)
    model = EuleroDec(get_config("tiny"))
    trainer = EuleroDecTrainer(model, lr=3e-3)
    x = torch.cat([_speechlike(3600, 0), _speechlike(3600, 1) * 0.5])
    losses = [trainer.step(x)["loss/total"] for _ in range(20)]
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


def _briefly_trained_tiny(seed: int = 0) -> tuple[EuleroDec, torch.Tensor]:
    """The tiny model after two training-mode passes (codebooks initialised, EMA/BN statistics set), in eval."""
    torch.manual_seed(seed)  # weights, codebook initialisation: nothing drawn from a state left by other tests
    model = EuleroDec(get_config("tiny"))
    x = _speechlike(4000)
    model.train()
    for _ in range(2):
        model(x)
    return model.eval(), x


def test_save_load_is_exact(tmp_path):
    from bench.models.checkpoint import load_checkpoint, save_checkpoint

    model, x = _briefly_trained_tiny()
    ref = model(x)
    path = save_checkpoint(tmp_path / "m.safetensors", model_state_for_saving(model),
                           {"model": "eulerodec", "config": model.cfg.to_dict()})
    tensors, card = load_checkpoint(path, model="eulerodec")
    assert any(k.endswith(".__complex__") for k in tensors)
    again = EuleroDec(type(model.cfg).from_dict(card["config"])).eval()
    load_model_state(again, tensors)
    out = again(x)
    assert torch.equal(out.codes, ref.codes) and torch.equal(out.wav, ref.wav)
    with pytest.raises(ValueError, match="has shape"):
        load_model_state(EuleroDec(get_config("small6")), tensors)
    with pytest.raises(ValueError, match="does not match"):
        load_model_state(again, {k: v for k, v in tensors.items() if "decoder" not in k})


def test_half_precision_checkpoint_rounds_weights_and_stays_close(tmp_path):
    """A float16 checkpoint holds each float32 weight rounded to float16, and loads back as float32.

    What the model built from it may be held to, and what it may not: the audio of a full fp16
    encode + decode is NOT compared with the fp32 one. In this briefly trained tiny model the quantiser
    removes only ~20% of the latent's energy, so many frames sit near a tie between two codebook
    entries; rounding the weights (float16 unit roundoff 2**-11 ~ 4.9e-4, amplified by the network to
    ~0.3% in the latent) flips such a code in most models, and the untrained decoder maps the two tied
    entries to very different audio: over torch seeds 0..199 the end-to-end relative error of the fp16
    model has median 0.2% but reaches 25%, 43% and 82% (seeds 11, 107, 157). The old check (max error
    < 10% of peak) passed or failed by the luck of the global RNG state. Checked instead, with the worst
    case over those 200 seeds in brackets: the latent (relative L2 error < 5%, [2.2%]); decoding the
    fp32 codes (relative L2 error < 3%, [1.2%]); and that the fp16 codes quantise the fp32 latent as
    well as the fp32 codes do, so a flipped code is a tie and not a wrong choice (residual norm within
    1%, [0.04%]; random codes are 14-45% worse).
    """
    from bench.models.checkpoint import load_checkpoint, save_checkpoint

    model, x = _briefly_trained_tiny()
    state = model_state_for_saving(model)
    card = {"model": "eulerodec", "config": model.cfg.to_dict()}
    full = save_checkpoint(tmp_path / "m.safetensors", state, card)
    half = save_checkpoint(tmp_path / "h.safetensors", state, card, half=True)
    tensors, half_card = load_checkpoint(half, model="eulerodec")
    assert half_card["weights_dtype"] == "float16"
    assert half.stat().st_size < 0.55 * full.stat().st_size
    assert tensors.keys() == state.keys()
    for name, t in state.items():  # exactly the fp16 rounding of every floating tensor, nothing else
        want = t.half().float() if t.is_floating_point() else t
        assert tensors[name].dtype == want.dtype and torch.equal(tensors[name], want), name
    third = EuleroDec(model.cfg).eval()
    load_model_state(third, tensors)
    assert all(p.dtype in (torch.float32, torch.complex64) for p in third.state_dict().values()
               if p.is_floating_point() or p.is_complex())

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    with torch.no_grad():
        ref = model(x)
        latent32 = model.latent(x)
        assert rel(third.latent(x), latent32) < 0.05
        assert rel(third.decode(ref.codes, x.shape[-1]), ref.wav) < 0.03
        codes16 = third.encode(x)
        assert codes16.shape == ref.codes.shape
        err32 = (latent32 - model.quantizer.decode_codes(ref.codes)).norm()
        err16 = (latent32 - model.quantizer.decode_codes(codes16)).norm()
        assert err16 <= 1.01 * err32
        out = third(x).wav
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_training_state_with_complex_parameters_resumes(tmp_path):
    from bench.train.eulerodec import EuleroDecTrainer
    from bench.train.loop import load_training_state, save_training_state

    torch.manual_seed(0)
    model = EuleroDec(get_config("tiny"))
    trainer = EuleroDecTrainer(model)
    x = _speechlike(4800)
    trainer.step(x)
    save_training_state(tmp_path, 1, 1.0, model="eulerodec", config=model.cfg.to_dict(), modules={"model": model},
                        optimizers={"model": trainer.opt}, schedulers={"model": trainer.sched})
    model2 = EuleroDec(get_config("tiny"))
    trainer2 = EuleroDecTrainer(model2)
    step, _, _ = load_training_state(tmp_path, model="eulerodec", modules={"model": model2},
                                     optimizers={"model": trainer2.opt}, schedulers={"model": trainer2.sched})
    assert step == 1
    for (n, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), n
    # the next step after resuming matches the next step without interruption (same batch, same RNG)
    torch.manual_seed(5)
    v1 = trainer.step(x)["loss/total"]
    torch.manual_seed(5)
    v2 = trainer2.step(x)["loss/total"]
    assert v1 == pytest.approx(v2, rel=1e-5)


def test_all_named_configs_are_consistent():
    for name, cfg in CONFIGS.items():
        assert cfg.name == name
        assert cfg.latent_freq_bins * cfg.freq_downsample == 256


def test_kmeans_refit_from_training_audio_and_heldout_usage(tmp_path):
    import soundfile as sf

    from bench.train.data import ExcerptSampler, scan
    from bench.train.eulerodec import heldout_usage, refit_codebooks

    for i in range(3):
        sf.write(tmp_path / f"clip{i}.wav", _speechlike(24000 * 3, seed=i)[0, 0].numpy() * (0.3 + 0.3 * i), 24000)
    files = scan([str(tmp_path)])
    torch.manual_seed(0)
    model = EuleroDec(get_config("tiny"))
    sampler = ExcerptSampler(files, 24000, 2.0, seed=1)
    info = refit_codebooks(model, sampler, seconds=32, iters=3, frames_per_step=8, seed=0)
    assert info["frames"] == 16 * model.latent_frames(48000) and len(info["perplexity"]) == 12
    assert all(1 <= p <= 64 for p in info["perplexity"])
    assert 0 < info["relative_error"][-1] < info["relative_error"][0] < 1
    assert model.training  # refit restores the mode it found
    whole = refit_codebooks(model, files, seconds=6.5, iters=1, frames_per_step=8, seed=0, weight_by="residual")
    assert whole["pool"] == "files" and whole["weight_by"] == "residual"
    assert whole["frames"] == 3 * model.latent_frames(72000)  # whole files until 6.5 s are reached
    usage = heldout_usage(model, files)
    assert usage["seconds"] == pytest.approx(9.0) and usage["frames"] == 3 * model.latent_frames(72000)
    assert len(usage["perplexity"]) == 12 and all(1 <= p <= 64 for p in usage["perplexity"])
    assert all(0 < u <= 1 for u in usage["usage_fraction"])
    assert 40 < usage["uniform_perplexity_on_as_many_frames"] <= 64


def test_perplexity_estimates_plug_in_bias_and_coverage_adjustment():
    from bench.train.eulerodec import perplexity_estimates

    g = torch.Generator().manual_seed(0)
    # a code that uses 1024 of 2048 entries uniformly (true perplexity 1024), seen on 4600 frames
    counts = torch.bincount(torch.randint(0, 1024, (4600,), generator=g), minlength=2048).float()
    plug_in, adjusted = perplexity_estimates(counts)
    assert 850 < plug_in < 960  # biased low: looks collapsed by the K/2 rule
    assert abs(adjusted - 1024) < 0.08 * 1024
    # plenty of frames: both agree with the truth
    counts = torch.bincount(torch.randint(0, 1024, (400000,), generator=g), minlength=2048).float()
    plug_in, adjusted = perplexity_estimates(counts)
    assert abs(plug_in - 1024) < 5 and abs(adjusted - 1024) < 5
    # a collapsed code stays collapsed
    counts = torch.zeros(2048)
    counts[:3] = torch.tensor([4000.0, 500.0, 100.0])
    assert perplexity_estimates(counts)[1] < 3
    assert perplexity_estimates(torch.zeros(2048)) == (1.0, 1.0)
