"""Train Improved RVQGAN (DAC): ``bench train dac --config small --data DIR... --steps N --out DIR``.

The DAC recipe (Kumar et al. 2023, descript-audio-codec ``conf/base.yml``): each step first updates
the discriminator (LSGAN on MPD + multi-band complex STFT discriminator, gradient norm clipped at 10),
then the generator with 15 x multi-scale mel + 2 x feature matching + 1 x adversarial + 1 x codebook +
0.25 x commitment (gradient norm clipped at 1000); AdamW lr 1e-4, betas (0.8, 0.99), learning rates
decayed by 0.999996 per step; 0.38 s excerpts at -16 LUFS with random phase shift, balanced across
groups; quantizer dropout 0.5.

Not in the released recipe, because without it the residual stages stay dead on a short budget
(``bench.models.rvq`` says why): data-initialised EMA codebooks with dead-code restarts, 15 x the
RVQ's residual alignment term, and the latent's scale set from the first batch
(``bench.models.dac_model.LatentHead``). Every validation logs, per RVQ stage, the share of its input
energy it leaves, its perplexity and its lookup error (``vq/...`` in ``val.csv``; the final card's
``validation.rvq_stages``), beside the mel distance with 1 and with all codebooks.

Outputs in ``--out``: ``dac_<config>.safetensors`` + ``.json`` (generator weights and card, the file
to benchmark with ``--codecs dac:PATH``), ``train_state.*`` (for ``--resume``), ``log.csv``
(losses), ``val.csv`` (validation), ``holdout.json`` (the held-out files and validation clips).

The run around the model (data, hold-out, overlap checks, resume, checkpoints) is
``bench.train.template``; this module holds the DAC step (:class:`DACTrainer`, reused by VRVQ), its
validation and its card fields (:class:`DACRun`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, cast

import torch

from bench.models.checkpoint import module_tensors
from bench.models.dac_model import CONFIGS, DAC, DACConfig, GeneratorOutput, count_parameters
from bench.models.rvq_stats import StageStats, stage_stats, stats_card
from bench.train.config import TrainConfig
from bench.train.discriminators import Discriminator, DiscriminatorConfig
from bench.train.loop import (
    clip_gradients,
    make_optimizer,
    make_scheduler,
    unwrap,
    wrap_ddp,
)
from bench.train.losses import (
    LossWeights,
    complex_stft_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    weighted_total,
)
from bench.train.template import ModelConfig, ModelRun, Recipe, rounded_validation, run_training

MODEL = "dac"
GEN_GRAD_CLIP = 1e3
DISC_GRAD_CLIP = 10.0


@dataclass(frozen=True)
class DACOptions:
    """DAC's own training options (``bench train dac --help``)."""

    lr: float = 1e-4  # AdamW, generator and discriminator
    excerpt_s: float | None = None  # None: the recipe's (0.38 s)
    quantizer_dropout: float | None = None  # None: the config's (0.5)
    adv_start_step: int = 0  # discriminator-free warm-up up to this step (0: DAC's recipe)
    phase_weight: float = 0.0  # weight of the complex-STFT term (0: DAC's recipe, no such term)


SMALL_DISC = DiscriminatorConfig(mpd_channels=(8, 16, 32, 64, 64), mrd_channels=8)
TINY_DISC = DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 4), fft_sizes=(256,), mrd_channels=2)

RECIPES: dict[str, Recipe[DACConfig]] = {
    "44k": Recipe(CONFIGS["44k"], batch_size=12, discriminator=DiscriminatorConfig()),
    "24k": Recipe(CONFIGS["24k"], batch_size=12, discriminator=DiscriminatorConfig()),
    "16k": Recipe(CONFIGS["16k"], batch_size=12, discriminator=DiscriminatorConfig()),
    "small": Recipe(CONFIGS["small"], batch_size=4, discriminator=SMALL_DISC),
    "tiny": Recipe(CONFIGS["tiny"], batch_size=2, discriminator=TINY_DISC),
}


class DACTrainer:
    """One generator + discriminator pair and their optimisers; ``step`` is one DAC training step.

    Reusable without the CLI (tests, VRVQ): give it the models and a batch source.
    """

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module, *, sample_rate_hz: int,
                 n_codebooks: int | None, lr: float = 1e-4, weights: LossWeights | None = None) -> None:
        from bench.metrics.mel import MultiScaleMelDistance

        self.generator = generator
        self.discriminator = discriminator
        self.n_codebooks = n_codebooks
        self.weights = weights or LossWeights()
        self.mel = MultiScaleMelDistance(sample_rate_hz=sample_rate_hz)
        self.opt_g = make_optimizer(generator.parameters(), lr=lr)
        self.opt_d = make_optimizer(discriminator.parameters(), lr=lr)
        self.sched_g = make_scheduler(self.opt_g)
        self.sched_d = make_scheduler(self.opt_d)

    def generator_terms(self, real: torch.Tensor, out: GeneratorOutput) -> dict[str, torch.Tensor]:
        """The non-adversarial generator terms (VRVQ adds its rate term here); the RVQ's residual
        alignment when the generator reports it (``extra["residual_loss"]``, see ``bench.models.rvq``)."""
        terms = {"mel": self.mel(out.audio, real).mean(),
                 "codebook": out.codebook_loss.mean(),
                 "commitment": out.commitment_loss.mean()}
        if "residual_loss" in out.extra:
            terms["residual"] = out.extra["residual_loss"].mean()
        if self.weights.phase > 0:
            terms["phase"] = complex_stft_loss(out.audio, real)
        return terms

    def step(self, real: torch.Tensor, adversarial: bool = True) -> dict[str, float]:
        """One training step. ``adversarial=False`` (a warm-up) skips the discriminator: the generator
        then learns from the mel and VQ terms only, at about half the cost per step."""
        b = real.shape[0]
        self.generator.train()
        self.discriminator.train()
        out = self.generator(real, n_codebooks=self.n_codebooks)
        fake = out.audio
        values: dict[str, float] = {}

        if adversarial:
            d_all = self.discriminator(torch.cat([fake.detach(), real]))
            d_fake = [[f[:b] for f in maps] for maps in d_all]
            d_real = [[f[b:] for f in maps] for maps in d_all]
            loss_d = discriminator_loss(d_fake, d_real)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            gn_d = clip_gradients(self.discriminator, DISC_GRAD_CLIP)
            self.opt_d.step()
            values.update({"loss/discriminator": float(loss_d.detach()), "grad_norm/discriminator": min(gn_d, 1e9)})
            self.sched_d.step()
        else:  # the discriminator's schedule follows the global step during the warm-up too
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                self.sched_d.step()

        terms = self.generator_terms(real, out)
        if adversarial:
            g_all = self.discriminator(torch.cat([fake, real]))
            g_fake = [[f[:b] for f in maps] for maps in g_all]
            g_real = [[f[b:] for f in maps] for maps in g_all]
            terms["adversarial"] = generator_adversarial_loss(g_fake)
            terms["feature"] = feature_matching_loss(g_fake, g_real)
        loss_g = weighted_total(terms, self.weights)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        gn_g = clip_gradients(self.generator, GEN_GRAD_CLIP)
        self.opt_g.step()
        self.sched_g.step()

        values.update({f"loss/{k}": float(v.detach()) for k, v in terms.items()})
        values.update({"loss/generator": float(loss_g.detach()), "grad_norm/generator": min(gn_g, 1e9),
                       "lr": float(self.sched_g.get_last_lr()[0])})
        return values

    def modules(self) -> dict[str, torch.nn.Module]:
        """The networks by name, as the training state stores them."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by name, as the training state stores them."""
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def schedulers(self) -> dict[str, Any]:
        """The learning-rate schedules by name, as the training state stores them."""
        return {"generator": self.sched_g, "discriminator": self.sched_d}


@torch.no_grad()
def evaluate(generator: torch.nn.Module, clips: torch.Tensor, sample_rate_hz: int, n_codebooks: int,
             groups: list[str] | None = None, batch_size: int = 4) -> dict[str, float]:
    """Mean mel distance and SI-SDR of ``clips [N, 1, T]`` coded with ``n_codebooks`` (eval mode)."""
    from bench.metrics.mel import MultiScaleMelDistance
    from bench.metrics.si_sdr import si_sdr_db

    model = unwrap(generator)
    was_training = model.training
    model.eval()
    mel = MultiScaleMelDistance(sample_rate_hz=sample_rate_hz)
    device = next(model.parameters()).device
    mels, sdrs = [], []
    for i in range(0, clips.shape[0], batch_size):
        x = clips[i : i + batch_size].to(device)
        y = model(x, n_codebooks=n_codebooks).audio
        mels.append(mel(y, x).cpu())
        sdrs.append(si_sdr_db(y[:, 0].cpu().double(), x[:, 0].cpu().double()))
    model.train(was_training)
    mel_all, sdr_all = torch.cat(mels), torch.cat(sdrs)
    out = {"val/mel_distance": float(mel_all.mean()), "val/si_sdr_db": float(torch.nanmean(sdr_all))}
    if groups:
        for g in sorted(set(groups)):
            idx = torch.tensor([j for j, name in enumerate(groups) if name == g])
            out[f"val/mel_distance/{g}"] = float(mel_all[idx].mean())
    return out


#: how the RVQ is kept alive, for the card (``bench.models.rvq``; not in the released DAC)
RVQ_UPKEEP_TEXT = ("RVQ upkeep (not in DAC): a fresh model's RVQ stages set up from its first batch (principal "
                   "directions in, codebook from frames, least-squares out-projection) and its latent scaled to "
                   "unit RMS; EMA codebooks (decay 0.99), dead-code restarts, 15 x residual alignment of each "
                   "stage's out-projection")


@torch.no_grad()
def rvq_stage_stats(generator: torch.nn.Module, clips: torch.Tensor, batch_size: int = 4) -> list[StageStats]:
    """Per-stage RVQ figures (``bench.models.rvq_stats``) of ``clips [N, 1, T]`` through the encoder (eval mode)."""
    model = cast(DAC, unwrap(generator))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    latents = [model.encoder(model.pad(clips[i : i + batch_size].to(device)))
               for i in range(0, clips.shape[0], batch_size)]
    model.train(was_training)
    return stage_stats(model.quantizer, latents)


def stage_log(stats: list[StageStats]) -> dict[str, float]:
    """The per-stage figures flattened for the validation CSV."""
    out: dict[str, float] = {}
    for s in stats:
        out[f"vq/energy_ratio/{s.stage}"] = round(s.energy_ratio, 4)
        out[f"vq/perplexity/{s.stage}"] = round(s.perplexity, 1)
        out[f"vq/lookup_error/{s.stage}"] = round(s.lookup_error, 4)
    return out


def phase_text(weight: float) -> str:
    """The complex-STFT term in words for a card ('' when off, as in DAC's recipe)."""
    if weight <= 0:
        return ""
    return (f" + {weight:g} x complex-STFT L1 (|S|^0.3 with phase, n_fft 512, hop 128; not in DAC: the mel and "
            "GAN terms leave the phase free, and a short budget then ends with SI-SDR far below 0 dB)")


def recipe_text(lr: float, adv_start_step: int, step: int, phase_weight: float = 0.0) -> str:
    """What the run actually did, in words, for the card (deviations from DAC's recipe named)."""
    text = (f"DAC (Kumar et al. 2023): AdamW lr {lr:g} (DAC: 1e-4), betas (0.8, 0.99), ExponentialLR 0.999996, "
            f"15 mel + 1 codebook + 0.25 commitment{phase_text(phase_weight)}; {RVQ_UPKEEP_TEXT}")
    if adv_start_step >= step:
        return text + (f"; discriminator-free warm-up for all {step} steps (adversarial terms from step "
                       f"{adv_start_step}, not reached), so no GAN training yet")
    adv = "2 feature + 1 adversarial (LSGAN), MPD(2,3,5,7,11) + multi-band complex STFT discriminator"
    if adv_start_step:
        return text + f" + {adv} from step {adv_start_step + 1} (discriminator-free warm-up before)"
    return text + f" + {adv} from the start"


class GANOptions(Protocol):
    """The options the GAN-trained codecs (DAC, VRVQ) share."""

    @property
    def lr(self) -> float:
        """AdamW learning rate of generator and discriminator."""
        ...

    @property
    def adv_start_step(self) -> int:
        """The last step of the discriminator-free warm-up (0: none)."""
        ...

    @property
    def excerpt_s(self) -> float | None:
        """Excerpt length in seconds (None: the recipe's)."""
        ...


GC = TypeVar("GC", bound=ModelConfig)
GO = TypeVar("GO", bound=GANOptions)


class GANRun(ModelRun[GC, GO]):
    """What DAC and VRVQ share in the training template: a generator, a discriminator, a :class:`DACTrainer`.

    A subclass's ``build`` sets ``generator``, ``discriminator`` and ``trainer``.
    """

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    trainer: DACTrainer

    @property
    def discriminator_config(self) -> DiscriminatorConfig:
        """The recipe's discriminator (every GAN recipe has one)."""
        disc = self.setup.recipe.discriminator
        if disc is None:
            raise ValueError(f"{self.title} recipe {self.setup.cfg.config_name!r} has no discriminator")
        return disc

    def training_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The trainer's networks, optimisers and schedules."""
        return self.trainer.modules(), self.trainer.optimizers(), self.trainer.schedulers()

    def distribute(self) -> None:
        """Both networks under DistributedDataParallel when the run has several processes."""
        self.trainer.generator = wrap_ddp(self.generator, self.setup.dist)
        self.trainer.discriminator = wrap_ddp(self.discriminator, self.setup.dist)

    def data_line(self) -> str:
        """The data and device part of the summary line."""
        data = self.setup.data
        return (f"{len(data.train_files)} training files, {len(data.val_files)} held out; "
                f"device {self.setup.device_text}")

    def step(self, step: int) -> dict[str, float]:
        """One DAC step on a fresh batch; adversarial after the warm-up."""
        batch = self.setup.sampler.batch(self.setup.batch_size).to(self.setup.dist.device)
        return self.trainer.step(batch, adversarial=step > self.options.adv_start_step)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The generator's weights (the discriminator stays in the training state)."""
        return module_tensors("generator", self.generator)

    def gan_facts(self, step: int) -> dict[str, Any]:
        """Learning rate, warm-up and discriminator: the card's training facts both GAN codecs record."""
        o = self.options
        return {"lr": o.lr, "adversarial_from_step": o.adv_start_step,
                "adversarial_steps": max(0, step - o.adv_start_step),
                "discriminator": self.discriminator_config.to_dict()}


class DACRun(GANRun[DACConfig, DACOptions]):
    """DAC in the training template: validation per number of codebooks."""

    name = MODEL
    title = "DAC"
    recipes = RECIPES

    @classmethod
    def model_config(cls, recipe: Recipe[DACConfig], options: DACOptions) -> DACConfig:
        """The recipe's config, with ``--quantizer-dropout`` when given."""
        if options.quantizer_dropout is None:
            return recipe.model
        return replace(recipe.model, quantizer_dropout=options.quantizer_dropout)

    @staticmethod
    def sample_rate_hz(config: DACConfig) -> int:
        """The generator's rate."""
        return config.sample_rate_hz

    def build(self) -> None:
        """Generator, discriminator and the DAC trainer on the run's device."""
        device = self.setup.dist.device
        self.generator = DAC(self.config).to(device)
        self.discriminator = Discriminator(self.discriminator_config).to(device)
        self.trainer = DACTrainer(self.generator, self.discriminator, sample_rate_hz=self.setup.sample_rate_hz,
                                  n_codebooks=self.config.n_codebooks, lr=self.options.lr,
                                  weights=LossWeights(phase=self.options.phase_weight))
        self.last_val: dict[str, float] = {}

    def summary(self) -> str:
        """Parameter counts, files and device."""
        return (f"{self.title} {self.setup.cfg.config_name}: {count_parameters(self.generator) / 1e6:.2f} M generator, "
                f"{count_parameters(self.discriminator) / 1e6:.2f} M discriminator parameters; {self.data_line()}")

    def _evaluate(self, n_codebooks: int) -> dict[str, float]:
        """Validation metrics with ``n_codebooks``."""
        data = self.setup.data
        return evaluate(self.generator, data.val_clips, self.setup.sample_rate_hz, n_codebooks, data.val_groups)

    def validate(self, step: int) -> dict[str, float]:
        """Mel distance and SI-SDR with one and with every codebook, and the per-stage RVQ figures."""
        nq = self.config.n_codebooks
        self.last_val = self._evaluate(nq)
        first = self._evaluate(1)
        stats = rvq_stage_stats(self.generator, self.setup.data.val_clips)
        print(f"step {step}: val mel {first['val/mel_distance']:.3f} (1 codebook) .. "
              f"{self.last_val['val/mel_distance']:.3f} ({nq}); energy left per stage "
              f"{[round(s.energy_ratio, 3) for s in stats]}", flush=True)
        return {**self.last_val, "val/mel_distance/n1": first["val/mel_distance"], **stage_log(stats)}

    def validation(self, final: bool) -> dict[str, Any]:
        """Every codebook count and the per-stage RVQ figures in the final card, else the last validation."""
        nq = self.config.n_codebooks
        if final:
            clips = self.setup.data.val_clips
            frames = clips.shape[0] * -(-clips.shape[-1] // self.config.hop_length)
            return {"per_n_codebooks": {str(n): rounded_validation(self._evaluate(n)) for n in range(1, nq + 1)},
                    "rvq_stages": stats_card(rvq_stage_stats(self.generator, clips), frames,
                                             "the validation clips' encoder latents (eval mode)")}
        return {f"n_codebooks_{nq}": rounded_validation(self.last_val or self._evaluate(nq))}

    def card_facts(self) -> dict[str, Any]:
        """Rates, codebooks and the generator's parameter count."""
        c = self.config
        return {"sample_rate_hz": c.sample_rate_hz, "frame_rate_hz": c.frame_rate_hz, "n_codebooks": c.n_codebooks,
                "codebook_size": c.codebook_size, "num_parameters": count_parameters(self.generator)}

    def training_facts(self, step: int) -> dict[str, Any]:
        """Discriminator, learning rate, warm-up and the recipe in words."""
        o = self.options
        return {**self.gan_facts(step), "recipe": recipe_text(o.lr, o.adv_start_step, step, o.phase_weight)}


OPTIONS = DACOptions


def train(config: TrainConfig[DACOptions]) -> int:
    """Train DAC as ``config`` says (``bench train dac``); returns the exit code."""
    return run_training(DACRun, config)
