"""Train Improved RVQGAN (DAC): ``bench train dac --config small --data DIR... --steps N --out DIR``.

The DAC recipe (Kumar et al. 2023, descript-audio-codec ``conf/base.yml``): each step first updates
the discriminator (LSGAN on MPD + multi-band complex STFT discriminator, gradient norm clipped at 10),
then the generator with 15 x multi-scale mel + 2 x feature matching + 1 x adversarial + 1 x codebook +
0.25 x commitment (gradient norm clipped at 1000); AdamW lr 1e-4, betas (0.8, 0.99), learning rates
decayed by 0.999996 per step; 0.38 s excerpts at -16 LUFS with random phase shift, balanced across
groups; quantizer dropout 0.5.

Outputs in ``--out``: ``dac_<config>.safetensors`` + ``.json`` (generator weights and card, the file
to benchmark with ``--codecs dac:PATH``), ``train_state.*`` (for ``--resume``), ``log.csv``
(losses), ``val.csv`` (validation), ``holdout.json`` (the held-out files and validation clips).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.cli.args import float_range, non_negative_int
from bench.models.checkpoint import module_tensors, save_checkpoint
from bench.models.dac_model import CONFIGS, DAC, DACConfig, count_parameters
from bench.train.data import (
    ExcerptSampler,
    describe_data,
    scan,
    split_holdout,
    validation_clips,
)
from bench.train.discriminators import Discriminator, DiscriminatorConfig
from bench.train.loop import (
    CsvLog,
    clip_gradients,
    device_description,
    git_commit,
    load_training_state,
    make_optimizer,
    make_scheduler,
    save_training_state,
    setup_distributed,
    train_loop,
    unwrap,
    wrap_ddp,
)
from bench.train.losses import (
    LossWeights,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    weighted_total,
)

MODEL = "dac"
GEN_GRAD_CLIP = 1e3
DISC_GRAD_CLIP = 10.0


@dataclass(frozen=True)
class Recipe:
    """A named training setup: generator config, discriminator config, default batch size."""

    model: DACConfig
    discriminator: DiscriminatorConfig
    batch_size: int
    excerpt_s: float = 0.38


SMALL_DISC = DiscriminatorConfig(mpd_channels=(8, 16, 32, 64, 64), mrd_channels=8)
TINY_DISC = DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 4), fft_sizes=(256,), mrd_channels=2)

RECIPES: dict[str, Recipe] = {
    "44k": Recipe(CONFIGS["44k"], DiscriminatorConfig(), 12),
    "24k": Recipe(CONFIGS["24k"], DiscriminatorConfig(), 12),
    "16k": Recipe(CONFIGS["16k"], DiscriminatorConfig(), 12),
    "small": Recipe(CONFIGS["small"], SMALL_DISC, 4),
    "tiny": Recipe(CONFIGS["tiny"], TINY_DISC, 2),
}


def add_model_arguments(p: argparse._ArgumentGroup) -> None:
    p.add_argument("--lr", type=float_range(0.0, lo_open=True), default=1e-4, help="AdamW learning rate (generator and discriminator)")
    p.add_argument("--excerpt-s", type=float_range(0.0, lo_open=True), default=None, help="excerpt length (default 0.38 s)")
    p.add_argument("--quantizer-dropout", type=float_range(0.0, 1.0), default=None, help="override the config's 0.5")
    p.add_argument("--adv-start-step", type=non_negative_int, default=0,
                   help="train without the discriminator (mel + VQ losses only) up to this step; 0 = the DAC "
                        "recipe (adversarial from the start)")


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown DAC config {name!r}.{did_you_mean(name, list(RECIPES))}")
    return RECIPES[name]


class DACTrainer:
    """One generator + discriminator pair and their optimisers; ``step`` is one DAC training step.

    Reusable without the CLI (tests, VRVQ): give it the models and a batch source.
    """

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module, *, sample_rate_hz: int,
                 n_codebooks: int, lr: float = 1e-4, weights: LossWeights | None = None) -> None:
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

    def generator_terms(self, real: torch.Tensor, out) -> dict[str, torch.Tensor]:
        """The non-adversarial generator terms (VRVQ adds its rate term here)."""
        return {"mel": self.mel(out.audio, real).mean(),
                "codebook": out.codebook_loss.mean(),
                "commitment": out.commitment_loss.mean()}

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
                       "lr": self.sched_g.get_last_lr()[0]})
        return values

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def schedulers(self) -> dict:
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


def recipe_text(lr: float, adv_start_step: int, step: int) -> str:
    """What the run actually did, in words, for the card (deviations from DAC's recipe named)."""
    text = (f"DAC (Kumar et al. 2023): AdamW lr {lr:g} (DAC: 1e-4), betas (0.8, 0.99), ExponentialLR 0.999996, "
            "15 mel + 1 codebook + 0.25 commitment")
    if adv_start_step >= step:
        return text + (f"; discriminator-free warm-up for all {step} steps (adversarial terms from step "
                       f"{adv_start_step}, not reached), so no GAN training yet")
    adv = "2 feature + 1 adversarial (LSGAN), MPD(2,3,5,7,11) + multi-band complex STFT discriminator"
    if adv_start_step:
        return text + f" + {adv} from step {adv_start_step + 1} (discriminator-free warm-up before)"
    return text + f" + {adv} from the start"


def export_card(recipe_name: str, config: DACConfig, *, step: int, wall_s: float, device: str, data: dict,
                holdout: list[dict], validation: dict, batch_size: int, excerpt_s: float,
                discriminator: dict | None = None, lr: float = 1e-4, adv_start_step: int = 0,
                extra: dict | None = None) -> dict:
    card = {
        "model": MODEL,
        "name": f"dac_{recipe_name}",
        "config_name": recipe_name,
        "config": config.to_dict(),
        "sample_rate_hz": config.sample_rate_hz,
        "frame_rate_hz": config.frame_rate_hz,
        "n_codebooks": config.n_codebooks,
        "codebook_size": config.codebook_size,
        "num_parameters": None,
        "training": {
            "steps": step, "wall_time_s": round(wall_s, 1), "device": device, "batch_size": batch_size,
            "excerpt_s": excerpt_s, "discriminator": discriminator, "lr": lr,
            "adversarial_from_step": adv_start_step,
            "adversarial_steps": max(0, step - adv_start_step),
            "recipe": recipe_text(lr, adv_start_step, step),
            "data": data, "holdout": holdout, "git_commit": git_commit(), "torch": torch.__version__,
        },
        "validation": validation,
        "licence": "weights: the project's own work; training data licences listed under training.data",
    }
    if extra:
        card.update(extra)
    return card


def train(args: argparse.Namespace) -> int:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    recipe = get_recipe(args.config)
    config = recipe.model
    if args.quantizer_dropout is not None:
        config = replace(config, quantizer_dropout=args.quantizer_dropout)
    batch_size = args.batch_size or recipe.batch_size
    excerpt_s = args.excerpt_s or recipe.excerpt_s
    dist = setup_distributed(args.device)
    torch.manual_seed(args.seed + dist.rank)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    files = scan(args.data)
    train_files, val_files = split_holdout(files, args.holdout_fraction)
    sr = config.sample_rate_hz
    sampler = ExcerptSampler(train_files, sr, excerpt_s, seed=args.seed * 1000 + dist.rank)
    val_clips, val_desc = validation_clips(val_files, sr, args.val_duration_s, args.val_per_group)
    val_groups = [d["group"] for d in val_desc]
    data_card = describe_data(train_files, args.data)
    data_card["licences"] += [t for t in args.data_licence if t not in data_card["licences"]]
    holdout = [{"path": f.path, "group": f.group} for f in val_files]
    if dist.is_main:
        (out_dir / "holdout.json").write_text(json.dumps({"held_out_files": holdout, "validation_clips": val_desc},
                                                         indent=2) + "\n")

    generator = DAC(config).to(dist.device)
    discriminator = Discriminator(recipe.discriminator).to(dist.device)
    trainer = DACTrainer(generator, discriminator, sample_rate_hz=sr, n_codebooks=config.n_codebooks, lr=args.lr)
    start_step, start_wall = 0, 0.0
    if args.resume:
        start_step, start_wall, _ = load_training_state(out_dir, model=MODEL, modules=trainer.modules(),
                                                        optimizers=trainer.optimizers(),
                                                        schedulers=trainer.schedulers())
        print(f"resumed from step {start_step} ({start_wall / 3600:.2f} h of training)")
    trainer.generator = wrap_ddp(generator, dist)
    trainer.discriminator = wrap_ddp(discriminator, dist)
    device_text = device_description(dist.device) + (f" x {dist.world_size} processes" if dist.enabled else "")
    if dist.is_main:
        print(f"DAC {args.config}: {count_parameters(generator) / 1e6:.2f} M generator, "
              f"{count_parameters(discriminator) / 1e6:.2f} M discriminator parameters; "
              f"{len(train_files)} training files, {len(val_files)} held out; device {device_text}")

    last_val: dict[str, float] = {}

    def step_fn(step: int) -> dict[str, float]:
        return trainer.step(sampler.batch(batch_size).to(dist.device), adversarial=step > args.adv_start_step)

    def validate_fn(step: int) -> dict[str, float]:
        if not dist.is_main:
            return {}
        last_val.clear()
        last_val.update(evaluate(generator, val_clips, sr, config.n_codebooks, val_groups))
        return dict(last_val)

    def save_fn(step: int, wall_s: float, final: bool) -> None:
        if not dist.is_main:
            return
        save_training_state(out_dir, step, wall_s, model=MODEL, config=config.to_dict(),
                            modules=trainer.modules(), optimizers=trainer.optimizers(),
                            schedulers=trainer.schedulers(), extra={"config_name": args.config})
        validation: dict = {"clips": len(val_desc), "duration_s_each": args.val_duration_s}
        if final:
            per_n = {}
            for n in range(1, config.n_codebooks + 1):
                per_n[str(n)] = {k.removeprefix("val/"): round(v, 4) for k, v in
                                 evaluate(generator, val_clips, sr, n, val_groups).items()}
            validation["per_n_codebooks"] = per_n
        else:
            metrics = last_val or evaluate(generator, val_clips, sr, config.n_codebooks, val_groups)
            validation[f"n_codebooks_{config.n_codebooks}"] = {k.removeprefix("val/"): round(v, 4)
                                                                for k, v in metrics.items()}
        card = export_card(args.config, config, step=step, wall_s=wall_s, device=device_text, data=data_card,
                           holdout=holdout, validation=validation, batch_size=batch_size * dist.world_size,
                           excerpt_s=excerpt_s, discriminator=recipe.discriminator.to_dict(),
                           lr=args.lr, adv_start_step=args.adv_start_step)
        card["num_parameters"] = count_parameters(generator)
        save_checkpoint(out_dir / f"dac_{args.config}.safetensors", module_tensors("generator", generator), card,
                        half=args.half)

    log = CsvLog(out_dir / "log.csv") if dist.is_main else None
    val_log = CsvLog(out_dir / "val.csv") if dist.is_main else None
    t = time.time()
    step, wall_s = train_loop(step_fn=step_fn, total_steps=args.steps, start_step=start_step,
                              start_wall_s=start_wall, checkpoint_every=args.checkpoint_every,
                              validate_every=args.validate_every, log_every=args.log_every, save_fn=save_fn,
                              validate_fn=validate_fn, log=log, val_log=val_log, is_main=dist.is_main, desc=f"dac {args.config}")
    if dist.is_main:
        print(f"done: step {step}, {time.time() - t:.0f} s this session; weights in {out_dir}/dac_{args.config}.safetensors")
    if dist.enabled:
        torch.distributed.destroy_process_group()
    return 0
