"""Train VRVQ: ``bench train vrvq --config small --data DIR... --steps N --out DIR [--init-from DAC_CKPT]``.

VRVQ (Chae et al. 2025) on the DAC backbone, trained as DAC is (``bench.train.dac``: same data
pipeline, hold-out split, discriminators, losses, optimisers, schedules, clipping, checkpoints) plus:

* per item a VBR level from U[0.125, 6] (the importance map scaled by level x N_q), except the last
  25% of each batch, which use all codebooks; quantizer dropout 0;
* a rate term lambda x mean(p) with lambda = 2 over the importance-mapped items;
* the hard codebook mask in the forward pass, the log-cosh surrogate (alpha = 2) in the backward pass
  (``--surrogate saturated`` for the baseline's saturated identity).

``--init-from`` warm-starts the generator from a DAC checkpoint of the same backbone config (an
exported ``dac_<config>.safetensors`` or a DAC ``train_state.safetensors``; from the latter the
discriminator too); the importance net starts fresh. The card records it.

Outputs in ``--out``: ``vrvq_<config>.safetensors`` + ``.json`` (the file to benchmark with
``--codecs vrvq:PATH``; its card holds per-level validation metrics and the mean measured kbps per
level, which the codec adapter uses as the nominal rate of its VBR operating points), ``train_state.*``
(``--resume``), ``log.csv``, ``val.csv``, ``holdout.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch

from bench.models.checkpoint import CheckpointError, load_checkpoint
from bench.models.dac_model import GeneratorOutput, count_parameters
from bench.models.vrvq_model import CONFIGS, VRVQ, VRVQConfig
from bench.train.config import TrainConfig
from bench.train.dac import RECIPES as DAC_RECIPES
from bench.train.dac import RVQ_UPKEEP_TEXT, DACTrainer, GANRun, phase_text
from bench.train.discriminators import Discriminator
from bench.train.loop import make_optimizer, make_scheduler, unwrap
from bench.train.losses import LossWeights
from bench.train.template import Recipe, rounded_validation, run_training

MODEL = "vrvq"
#: the VBR levels validated and written to the card (the codec's VBR operating points)
LEVELS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
VAL_LEVEL = 2.0  # the level tracked at every periodic validation (besides all codebooks)
KBPS_NOTE = ("payload kbps: 10 bits per active code + ceil(log2 N_q) bits per frame of side information in VBR; "
             "header not counted")


@dataclass(frozen=True)
class VRVQLossWeights(LossWeights):
    """DAC's weights plus the rate term: lambda = 2 (the paper's ``vq/rate_loss: 2``)."""

    rate: float = 2.0


@dataclass(frozen=True)
class VRVQOptions:
    """VRVQ's own training options (``bench train vrvq --help``)."""

    lr: float = 1e-4  # AdamW, generator and discriminator
    excerpt_s: float | None = None  # None: the recipe's (0.38 s)
    adv_start_step: int = 0  # discriminator-free warm-up up to this step (0: DAC's recipe)
    importance_lr: float | None = None  # None: ``lr``, as in the paper
    rate_weight: float = 2.0  # lambda of the rate term
    surrogate: str = "logcosh"  # gradient surrogate of the mask: "logcosh" (paper) or "saturated"
    alpha: float = 2.0  # log-cosh surrogate sharpness
    init_from: str | None = None  # a DAC checkpoint to warm-start from
    phase_weight: float = 0.0  # weight of the complex-STFT term (0: the recipe, no such term)


#: DAC's recipes on the VRVQ configs of the same names (same discriminators, batches, excerpts)
RECIPES: dict[str, Recipe[VRVQConfig]] = {
    name: Recipe(CONFIGS[name], r.batch_size, r.excerpt_s, discriminator=r.discriminator)
    for name, r in DAC_RECIPES.items()
}


class VRVQTrainer(DACTrainer):
    """DAC's training step with the VRVQ generator: the generator runs its VBR training recipe
    (no ``n_codebooks``) and the rate term joins the generator loss."""

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module, *, sample_rate_hz: int,
                 lr: float = 1e-4, rate_weight: float = 2.0, importance_lr: float | None = None,
                 phase_weight: float = 0.0) -> None:
        super().__init__(generator, discriminator, sample_rate_hz=sample_rate_hz, n_codebooks=None, lr=lr,
                         weights=VRVQLossWeights(rate=rate_weight, phase=phase_weight))
        if importance_lr is not None and importance_lr != lr:
            # one optimiser, two parameter groups: the importance net at its own learning rate
            imp = list(cast(VRVQ, unwrap(generator)).importance.parameters())
            ids = {id(q) for q in imp}
            rest = [q for q in generator.parameters() if id(q) not in ids]
            groups: list[dict[str, Any]] = [{"params": rest}, {"params": imp, "lr": importance_lr}]
            self.opt_g = make_optimizer(groups, lr=lr)
            self.sched_g = make_scheduler(self.opt_g)
        self._stats: dict[str, float] = {}

    def generator_terms(self, real: torch.Tensor, out: GeneratorOutput) -> dict[str, torch.Tensor]:
        """DAC's terms plus the rate term; records the mean codebook count of the VBR items."""
        terms = super().generator_terms(real, out)
        terms["rate"] = out.extra["rate_loss"]
        vbr = out.extra["vbr_items"]
        if bool(vbr.any()):
            self._stats = {"vbr/mean_codebooks": float(out.extra["counts"][vbr].float().mean())}
        return terms

    def step(self, real: torch.Tensor, adversarial: bool = True) -> dict[str, float]:
        """DAC's step, plus the VBR statistics of its batch."""
        values = super().step(real, adversarial=adversarial)
        values.update(self._stats)
        return values


def _level_name(level: float) -> str:
    """The card's and the codec's name of a VBR level (``L2``)."""
    return f"L{level:g}"


@torch.no_grad()
def evaluate(generator: torch.nn.Module, clips: torch.Tensor, sample_rate_hz: int, *,
             n_codebooks: int | None = None, level: float | None = None, batch_size: int = 4) -> dict[str, float]:
    """Mel distance, SI-SDR, mean codebooks per frame and the bitrate of ``clips [N, 1, T]`` coded
    in CBR (``n_codebooks``) or VBR (``level``), eval mode. ``kbps`` is the payload rate the codec's
    bitstream carries: 10 bits per active code, plus ceil(log2 N_q) bits per frame of side
    information in VBR (the bitstream header is not counted here)."""
    from bench.metrics.mel import MultiScaleMelDistance
    from bench.metrics.si_sdr import si_sdr_db

    model = cast(VRVQ, unwrap(generator))
    was_training = model.training
    model.eval()
    cfg = model.vrvq_config
    mel = MultiScaleMelDistance(sample_rate_hz=sample_rate_hz)
    device = next(model.parameters()).device
    mels, sdrs, counts = [], [], []
    for i in range(0, clips.shape[0], batch_size):
        x = clips[i : i + batch_size].to(device)
        out = model(x, n_codebooks=n_codebooks, level=level)
        mels.append(mel(out.audio, x).cpu())
        sdrs.append(si_sdr_db(out.audio[:, 0].cpu().double(), x[:, 0].cpu().double()))
        counts.append(out.extra["counts"].float().mean(dim=-1).cpu())
    model.train(was_training)
    mean_count = float(torch.cat(counts).mean())
    side_bits = cfg.count_bits if level is not None else 0
    frame_rate = cfg.backbone.frame_rate_hz
    kbps = frame_rate * (mean_count * cfg.backbone.bits_per_code + side_bits) / 1000.0
    return {"mel_distance": float(torch.cat(mels).mean()), "si_sdr_db": float(torch.nanmean(torch.cat(sdrs))),
            "mean_codebooks": mean_count, "kbps": kbps}


def warm_start(generator: VRVQ, discriminator: torch.nn.Module, path: str) -> dict:
    """Load a DAC checkpoint's generator (and discriminator, from a training state) into VRVQ.

    Every DAC tensor must fit; only the importance net may be missing. Returns a card note.
    """
    tensors, card = load_checkpoint(path, model="dac")
    sub = {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
    result = generator.load_state_dict(sub, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("importance.")]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{path}: DAC weights do not fit this VRVQ backbone "
                              f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})")
    disc = {k[len("discriminator."):]: v for k, v in tensors.items() if k.startswith("discriminator.")}
    if disc:
        unwrap(discriminator).load_state_dict(disc, strict=True)
    step = card.get("step", card.get("training", {}).get("steps"))
    return {"path": str(Path(path).resolve()), "dac_steps": step, "weights_sha256": card.get("weights_sha256"),
            "discriminator": bool(disc)}


def full_validation(generator: torch.nn.Module, clips: torch.Tensor, sr: int, n_codebooks: int) -> dict:
    """Every VBR level of :data:`LEVELS` and every CBR count: the card's R-D table."""
    vbr = {_level_name(lv): {k: round(v, 4) for k, v in evaluate(generator, clips, sr, level=lv).items()}
           for lv in LEVELS}
    cbr = {str(n): {k: round(v, 4) for k, v in evaluate(generator, clips, sr, n_codebooks=n).items()}
           for n in range(1, n_codebooks + 1)}
    return {"vbr_levels": vbr, "cbr_n_codebooks": cbr}


class VRVQRun(GANRun[VRVQConfig, VRVQOptions]):
    """VRVQ in the training template: DAC's run with the VRVQ generator, warm start and VBR validation."""

    name = MODEL
    title = "VRVQ"
    recipes = RECIPES

    @classmethod
    def model_config(cls, recipe: Recipe[VRVQConfig], options: VRVQOptions) -> VRVQConfig:
        """The recipe's config with the chosen surrogate and its sharpness."""
        return replace(recipe.model, surrogate=options.surrogate, alpha=options.alpha)

    @staticmethod
    def sample_rate_hz(config: VRVQConfig) -> int:
        """The backbone's rate."""
        return config.backbone.sample_rate_hz

    def build(self) -> None:
        """VRVQ generator, discriminator and the VRVQ trainer on the run's device."""
        device, o = self.setup.dist.device, self.options
        self.vrvq = VRVQ(self.config).to(device)
        self.generator = self.vrvq
        self.discriminator = Discriminator(self.discriminator_config).to(device)
        self.trainer = VRVQTrainer(self.generator, self.discriminator, sample_rate_hz=self.setup.sample_rate_hz,
                                   lr=o.lr, rate_weight=o.rate_weight, importance_lr=o.importance_lr,
                                   phase_weight=o.phase_weight)
        self.init_note: dict[str, Any] | None = None
        self.last_val: dict[str, float] = {}

    def resumed(self, state_card: dict[str, Any]) -> None:
        """The warm-start note the run started with."""
        self.init_note = state_card.get("extra", {}).get("warm_start")

    def fresh_start(self) -> None:
        """Warm start from ``--init-from`` when given."""
        if self.options.init_from:
            note = warm_start(self.vrvq, self.discriminator, self.options.init_from)
            self.init_note = note
            print(f"warm start from {note['path']} (DAC step {note['dac_steps']}, "
                  f"discriminator {'loaded' if note['discriminator'] else 'fresh'})")

    def summary(self) -> str:
        """Parameter counts (importance net apart), files and device."""
        return (f"{self.title} {self.setup.cfg.config_name}: {count_parameters(self.generator) / 1e6:.2f} M generator "
                f"({count_parameters(self.vrvq.importance) / 1e3:.1f} k importance net), "
                f"{count_parameters(self.discriminator) / 1e6:.2f} M discriminator parameters; {self.data_line()}")

    def validate(self, step: int) -> dict[str, float]:
        """All codebooks (CBR) and level :data:`VAL_LEVEL` (VBR)."""
        clips, sr, nq = self.setup.data.val_clips, self.setup.sample_rate_hz, self.config.n_codebooks
        self.last_val = {}
        for key, kwargs in ((f"n{nq}", {"n_codebooks": nq}), (_level_name(VAL_LEVEL), {"level": VAL_LEVEL})):
            for k, v in evaluate(self.generator, clips, sr, **kwargs).items():
                self.last_val[f"val/{key}/{k}"] = v
        return dict(self.last_val)

    def state_extra(self) -> dict[str, Any]:
        """The warm-start note, so a resumed run's card still names it."""
        return {"warm_start": self.init_note}

    def validation(self, final: bool) -> dict[str, Any]:
        """The R-D table of every level and count in the final card, else the last validation."""
        out: dict[str, Any] = {"groups": sorted({d["group"] for d in self.setup.data.val_desc}), "kbps_note": KBPS_NOTE}
        if final:
            out.update(full_validation(self.generator, self.setup.data.val_clips, self.setup.sample_rate_hz,
                                       self.config.n_codebooks))
        else:
            out["last"] = rounded_validation(self.last_val or self.validate(0))
        return out

    def card_facts(self) -> dict[str, Any]:
        """The backbone's rates and codebooks, and the generator's parameter count."""
        bb = self.config.backbone
        return {"sample_rate_hz": bb.sample_rate_hz, "frame_rate_hz": bb.frame_rate_hz, "n_codebooks": bb.n_codebooks,
                "codebook_size": bb.codebook_size, "num_parameters": count_parameters(self.generator)}

    def training_facts(self, step: int) -> dict[str, Any]:
        """Learning rates, warm-up, discriminator, the recipe in words and the warm start."""
        o = self.options
        gan = self.gan_facts(step)
        return {"lr": gan.pop("lr"), "importance_lr": o.importance_lr or o.lr, **gan,
                "recipe": recipe_text(self.config, o), "warm_start": self.init_note}


def recipe_text(config: VRVQConfig, options: VRVQOptions) -> str:
    """What the run did, in words, for the card."""
    return ("VRVQ (Chae et al. 2025) on DAC: level ~ U[{:g}, {:g}] per item, {:g}% of each batch with "
            "all codebooks, quantizer dropout 0, rate loss {:g} x mean(p) on importance-mapped items, "
            "{} surrogate (alpha {:g}); otherwise DAC: AdamW lr {:g} (importance net {:g}), betas "
            "(0.8, 0.99), ExponentialLR 0.999996, 15 mel + 1 codebook + 0.25 commitment{}, plus 2 feature "
            "+ 1 adversarial (LSGAN; MPD + multi-band complex STFT discriminator) from step {}; {}").format(
        config.level_min, config.level_max, 100 * config.full_codebook_rate, options.rate_weight,
        config.surrogate, config.alpha, options.lr, options.importance_lr or options.lr,
        phase_text(options.phase_weight), options.adv_start_step + 1, RVQ_UPKEEP_TEXT)


OPTIONS = VRVQOptions


def train(config: TrainConfig[VRVQOptions]) -> int:
    """Train VRVQ as ``config`` says (``bench train vrvq``); returns the exit code."""
    return run_training(VRVQRun, config)
