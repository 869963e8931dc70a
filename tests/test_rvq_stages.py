"""Dead residual stages are caught here: after a few training steps, every RVQ stage must remove energy
from its residual, and the latent's quantisation error must fall strictly with each added codebook.

Issue 18: the shipped ``dac_small`` had every stage after the first *raise* the residual energy
(``||r_k||^2 / ||r_k-1||^2`` of 1.05-1.16) and a flat R-D curve. The cause was the released DAC
quantiser at a fresh encoder's latent scale (~1e-2 per element): ``N(0, 1)`` codebooks that gradient
steps cannot move far, and out-projections that nothing asks to remove their residual. Each test
also runs the released behaviour on the same data and asserts that it fails the same criterion, so
the check is known to bite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shared_paths import SHARED_AUDIO

from bench.models.dac_model import CONFIGS, DAC
from bench.models.layers import init_conv_weights
from bench.models.rvq import ResidualVQ
from bench.models.rvq_stats import dead_stages, stage_stats
from bench.train.dac import DACTrainer
from bench.train.discriminators import Discriminator, DiscriminatorConfig
from bench.train.losses import LossWeights

torch.set_num_threads(1)

#: the released DAC quantiser: random N(0, 1) codebooks trained by their loss, no restarts
RELEASED = {"data_init": False, "dead_code_frames": 0, "ema_decay": None}


def _latents(scale: float = 1e-2, batch: int = 8, frames: int = 30, dim: int = 16, seed: int = 0) -> torch.Tensor:
    """Structured latents ``[B, dim, T]`` like a fresh encoder's: a 6-d subspace, per-frame gains spread
    over 20 dB (loud and quiet frames), overall RMS about ``scale``."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(dim, 6, generator=g)
    source = torch.randn(batch, 6, frames, generator=g)
    gain = 10 ** (torch.rand(batch, 1, frames, generator=g) - 0.5)
    z = torch.einsum("dk,bkt->bdt", basis, source * gain)
    return z * (scale / z.pow(2).mean().sqrt())


def _rvq(n: int = 4, **upkeep: object) -> ResidualVQ:
    """An RVQ of ``n`` stages of 64 4-d codes on 16-d latents, initialised as the DAC generator is."""
    torch.manual_seed(0)
    rvq = ResidualVQ(16, n, 64, codebook_dim=4, **upkeep)  # type: ignore[arg-type]
    rvq.apply(init_conv_weights)
    return rvq


def _train(rvq: ResidualVQ, z: torch.Tensor, steps: int, residual_weight: float) -> None:
    """DAC's VQ losses with a decoder stand-in (the relative latent error) at the recipe's Adam lr."""
    opt = torch.optim.AdamW([p for p in rvq.parameters() if p.requires_grad], lr=1e-3, betas=(0.8, 0.99))
    w = LossWeights(residual=residual_weight)
    rvq.train()
    for _ in range(steps):
        out = rvq(z, n_codebooks=rvq.n_codebooks)
        recon = ((out.z_q - z).pow(2).sum(dim=(1, 2)) / z.pow(2).sum(dim=(1, 2))).mean()
        loss = (w.mel * recon + w.codebook * out.codebook_loss.mean() + w.commitment * out.commitment_loss.mean()
                + w.residual * out.residual_loss.mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    rvq.eval()


def _latent_errors(rvq: ResidualVQ, z: torch.Tensor) -> list[float]:
    """``||z - z_q(n)||^2 / ||z||^2`` for n = 1..N (eval mode)."""
    with torch.no_grad():
        return [float((rvq(z, n_codebooks=n).z_q - z).pow(2).sum() / z.pow(2).sum())
                for n in range(1, rvq.n_codebooks + 1)]


@pytest.mark.parametrize("lookup", ["cosine", "euclidean"])
def test_every_stage_removes_energy_after_a_few_steps(lookup):
    z = _latents()
    rvq = _rvq(lookup=lookup)
    _train(rvq, z, steps=20, residual_weight=LossWeights().residual)
    errors = _latent_errors(rvq, z)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[0] < 0.9 and errors[-1] < 0.6 * errors[0], errors
    stats = stage_stats(rvq, z)
    assert dead_stages(stats) == [], [s.energy_ratio for s in stats]
    assert all(s.lookup_error < 0.9 for s in stats), [s.lookup_error for s in stats]  # each stage codes something
    assert math.isclose(stats[-1].latent_error, errors[-1], rel_tol=1e-4)


def test_the_released_quantiser_fails_the_same_check():
    """The old behaviour on the same data and steps: stages add energy (the regression this file guards)."""
    z = _latents()
    rvq = _rvq(**RELEASED)
    _train(rvq, z, steps=20, residual_weight=0.0)
    errors = _latent_errors(rvq, z)
    stats = stage_stats(rvq, z)
    assert dead_stages(stats), [s.energy_ratio for s in stats]
    assert not all(b < a for a, b in zip(errors, errors[1:])) or errors[0] > 1.0, errors


def test_upkeep_state_is_not_in_the_checkpoint_and_loaded_codebooks_are_kept():
    rvq = _rvq(2)
    keys = set(rvq.state_dict())
    assert not any(k.endswith(("initialised", "frames_unused", "ema_size", "ema_sum", "restarts")) for k in keys)
    _train(rvq, _latents(), steps=3, residual_weight=1.0)
    trained = {k: v.clone() for k, v in rvq.state_dict().items()}
    fresh = ResidualVQ(16, 2, 64, codebook_dim=4)
    fresh.load_state_dict(trained)
    fresh.train()
    with torch.no_grad():
        fresh(_latents(seed=1), n_codebooks=2)  # a training call: EMA moves, but no re-seeding from data
    for i, q in enumerate(fresh.stages(2)):
        assert bool(q.initialised)
        before, after = trained[f"quantizers.{i}.codebook.weight"], q.codebook.weight
        moved = (after - before).norm(dim=1) > 0
        assert 0 < int(moved.sum()) < 64  # only the codes this batch chose moved (and restarts, none yet)


CLIP = SHARED_AUDIO / "train" / "speech" / "vctk-p239" / "p239_004.flac"


def _speech(sample_rate_hz: int, duration_s: float) -> torch.Tensor:
    """``[2, 1, T]``: two excerpts of a real utterance if ../shared is there, else harmonic tones."""
    n = int(duration_s * sample_rate_hz)
    if CLIP.exists():
        from bench.train.data import AudioFile, read_mono

        f = AudioFile(str(CLIP), "speech", "x", 5.0, 48000, 1)
        xs = [read_mono(f, sample_rate_hz, start, duration_s) for start in (0.8, 1.6)]
    else:
        t = np.arange(n) / sample_rate_hz
        xs = [sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) for f0 in (150.0, 210.0)]
    x = np.stack([0.5 * np.asarray(v) / (np.abs(v).max() + 1e-9) for v in xs]).astype(np.float32)
    return torch.from_numpy(x)[:, None, :n]


@pytest.mark.parametrize("released", [False, True], ids=["fixed", "released"])
def test_tiny_dac_stages_remove_energy(released):
    """A tiny DAC trained briefly (mel and VQ terms): its residual stages remove energy; the released
    quantiser's do not."""
    torch.manual_seed(0)
    cfg = CONFIGS["tiny"]
    gen = DAC(cfg)
    if released:
        gen.quantizer = ResidualVQ(cfg.effective_latent_dim, cfg.n_codebooks, cfg.codebook_size, cfg.codebook_dim,
                                   cfg.quantizer_dropout, **RELEASED)
        gen.quantizer.apply(init_conv_weights)
        gen.encoder.head.initialised.fill_(True)  # the released latent scale, too
    disc = Discriminator(DiscriminatorConfig(periods=(2,), mpd_channels=(2,), fft_sizes=(256,), mrd_channels=2))
    weights = LossWeights(residual=0.0) if released else None
    trainer = DACTrainer(gen, disc, sample_rate_hz=cfg.sample_rate_hz, n_codebooks=cfg.n_codebooks, lr=1e-3,
                         weights=weights)
    x = _speech(cfg.sample_rate_hz, 0.25)
    for _ in range(25):
        trainer.step(x, adversarial=False)
    gen.eval()
    with torch.no_grad():
        stats = stage_stats(gen.quantizer, gen.encoder(gen.pad(x)))
    ratios = [round(s.energy_ratio, 3) for s in stats]
    if released:
        assert dead_stages(stats), ratios
    else:
        assert dead_stages(stats) == [], ratios
        errors = [s.latent_error for s in stats]
        assert all(b < a for a, b in zip(errors, errors[1:])), errors


def test_codebook_lookup_option_and_card_compatibility():
    """``codebook_lookup`` is omitted from cards at its default, so cards written before it read unchanged."""
    from dataclasses import replace

    from bench.models.dac_model import DACConfig

    cfg = CONFIGS["tiny"]
    assert "codebook_lookup" not in cfg.to_dict()
    euclid = replace(cfg, codebook_lookup="euclidean")
    assert DACConfig.from_dict(euclid.to_dict()) == euclid
    assert all(q.lookup_metric == "euclidean" for q in DAC(euclid).quantizer.stages(cfg.n_codebooks))
    with pytest.raises(ValueError, match="codebook_lookup"):
        replace(cfg, codebook_lookup="manhattan")


def test_fresh_latent_head_starts_at_unit_scale_and_loaded_weights_are_kept():
    torch.manual_seed(0)
    cfg = CONFIGS["tiny"]
    model = DAC(cfg).train()
    x = _speech(cfg.sample_rate_hz, 0.25)
    with torch.no_grad():
        z = model.encoder(x)
    assert abs(float(z.pow(2).mean()) - 1.0) < 0.05  # zero mean, unit RMS per channel on the first batch
    loaded = DAC(cfg)
    loaded.load_state_dict(DAC(cfg).state_dict())
    assert bool(loaded.encoder.head.initialised)
    assert all(bool(q.initialised) for q in loaded.quantizer.stages(cfg.n_codebooks))
