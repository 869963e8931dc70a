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

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.cli.args import float_range, non_negative_int
from bench.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    module_tensors,
    save_checkpoint,
)
from bench.models.dac_model import count_parameters
from bench.models.vrvq_model import CONFIGS, VRVQ, VRVQConfig
from bench.train.dac import RECIPES as DAC_RECIPES
from bench.train.dac import DACTrainer
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
from bench.train.losses import LossWeights

MODEL = "vrvq"
#: the VBR levels validated and written to the card (the codec's VBR operating points)
LEVELS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
VAL_LEVEL = 2.0  # the level tracked at every periodic validation (besides all codebooks)


@dataclass(frozen=True)
class VRVQLossWeights(LossWeights):
    """DAC's weights plus the rate term: lambda = 2 (the paper's ``vq/rate_loss: 2``)."""

    rate: float = 2.0


@dataclass(frozen=True)
class Recipe:
    model: VRVQConfig
    discriminator: DiscriminatorConfig
    batch_size: int
    excerpt_s: float = 0.38


RECIPES: dict[str, Recipe] = {
    name: Recipe(CONFIGS[name], r.discriminator, r.batch_size, r.excerpt_s) for name, r in DAC_RECIPES.items()
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown VRVQ config {name!r}.{did_you_mean(name, list(RECIPES))}")
    return RECIPES[name]


def add_model_arguments(p: argparse._ArgumentGroup) -> None:
    p.add_argument("--lr", type=float_range(0.0, lo_open=True), default=1e-4, help="AdamW learning rate (generator and discriminator)")
    p.add_argument("--excerpt-s", type=float_range(0.0, lo_open=True), default=None, help="excerpt length (default 0.38 s)")
    p.add_argument("--adv-start-step", type=non_negative_int, default=0,
                   help="train without the discriminator (mel + VQ + rate terms only) up to this step; 0 = the "
                        "DAC recipe (adversarial from the start)")
    p.add_argument("--importance-lr", type=float_range(0.0, lo_open=True), default=None,
                   help="learning rate of the importance net (default: --lr, as in the paper)")
    p.add_argument("--rate-weight", type=float_range(0.0), default=2.0, help="lambda of the rate term lambda x mean(p)")
    p.add_argument("--surrogate", choices=("logcosh", "saturated"), default="logcosh",
                   help="gradient surrogate of the mask: the paper's log-cosh, or the baseline saturated identity")
    p.add_argument("--alpha", type=float_range(0.0, lo_open=True), default=2.0, help="log-cosh surrogate sharpness")
    p.add_argument("--init-from", default=None, metavar="DAC_CKPT",
                   help="warm-start from a DAC checkpoint (dac_<config>.safetensors or a DAC train_state) "
                        "of the same backbone config")


class VRVQTrainer(DACTrainer):
    """DAC's training step with the VRVQ generator: the generator runs its VBR training recipe
    (no ``n_codebooks``) and the rate term joins the generator loss."""

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module, *, sample_rate_hz: int,
                 lr: float = 1e-4, rate_weight: float = 2.0, importance_lr: float | None = None) -> None:
        super().__init__(generator, discriminator, sample_rate_hz=sample_rate_hz, n_codebooks=None, lr=lr,
                         weights=VRVQLossWeights(rate=rate_weight))
        if importance_lr is not None and importance_lr != lr:
            # one optimiser, two parameter groups: the importance net at its own learning rate
            imp = list(unwrap(generator).importance.parameters())
            ids = {id(q) for q in imp}
            rest = [q for q in generator.parameters() if id(q) not in ids]
            self.opt_g = make_optimizer([{"params": rest}, {"params": imp, "lr": importance_lr}], lr=lr)
            self.sched_g = make_scheduler(self.opt_g)
        self._stats: dict[str, float] = {}

    def generator_terms(self, real: torch.Tensor, out) -> dict[str, torch.Tensor]:
        terms = super().generator_terms(real, out)
        terms["rate"] = out.extra["rate_loss"]
        vbr = out.extra["vbr_items"]
        if bool(vbr.any()):
            self._stats = {"vbr/mean_codebooks": float(out.extra["counts"][vbr].float().mean())}
        return terms

    def step(self, real: torch.Tensor, adversarial: bool = True) -> dict[str, float]:
        values = super().step(real, adversarial=adversarial)
        values.update(self._stats)
        return values


def _level_name(level: float) -> str:
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

    model = unwrap(generator)
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


def export_card(config_name: str, config: VRVQConfig, *, step: int, wall_s: float, device: str, data: dict,
                holdout: list[dict], validation: dict, batch_size: int, excerpt_s: float, rate_weight: float,
                init: dict | None, num_parameters: int, lr: float, adv_start_step: int,
                discriminator: dict, importance_lr: float | None = None) -> dict:
    bb = config.backbone
    return {
        "model": MODEL,
        "name": f"vrvq_{config_name}",
        "config_name": config_name,
        "config": config.to_dict(),
        "sample_rate_hz": bb.sample_rate_hz,
        "frame_rate_hz": bb.frame_rate_hz,
        "n_codebooks": bb.n_codebooks,
        "codebook_size": bb.codebook_size,
        "num_parameters": num_parameters,
        "training": {
            "steps": step, "wall_time_s": round(wall_s, 1), "device": device, "batch_size": batch_size,
            "excerpt_s": excerpt_s, "lr": lr, "importance_lr": importance_lr or lr,
            "adversarial_from_step": adv_start_step,
            "adversarial_steps": max(0, step - adv_start_step), "discriminator": discriminator,
            "recipe": ("VRVQ (Chae et al. 2025) on DAC: level ~ U[{:g}, {:g}] per item, {:g}% of each batch with "
                       "all codebooks, quantizer dropout 0, rate loss {:g} x mean(p) on importance-mapped items, "
                       "{} surrogate (alpha {:g}); otherwise DAC: AdamW lr {:g} (importance net {:g}), betas "
                       "(0.8, 0.99), ExponentialLR 0.999996, 15 mel + 1 codebook + 0.25 commitment, plus 2 feature "
                       "+ 1 adversarial (LSGAN; MPD + multi-band complex STFT discriminator) from step {}").format(
                config.level_min, config.level_max, 100 * config.full_codebook_rate, rate_weight,
                config.surrogate, config.alpha, lr, importance_lr or lr, adv_start_step + 1),
            "warm_start": init,
            "data": data, "holdout": holdout, "git_commit": git_commit(), "torch": torch.__version__,
        },
        "validation": validation,
        "licence": "weights: the project's own work; training data licences listed under training.data",
    }


def full_validation(generator: torch.nn.Module, clips: torch.Tensor, sr: int, n_codebooks: int) -> dict:
    """Every VBR level of :data:`LEVELS` and every CBR count: the card's R-D table."""
    vbr = {_level_name(lv): {k: round(v, 4) for k, v in evaluate(generator, clips, sr, level=lv).items()}
           for lv in LEVELS}
    cbr = {str(n): {k: round(v, 4) for k, v in evaluate(generator, clips, sr, n_codebooks=n).items()}
           for n in range(1, n_codebooks + 1)}
    return {"vbr_levels": vbr, "cbr_n_codebooks": cbr}


def train(args: argparse.Namespace) -> int:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    recipe = get_recipe(args.config)
    config = replace(recipe.model, surrogate=args.surrogate, alpha=args.alpha)
    batch_size = args.batch_size or recipe.batch_size
    excerpt_s = args.excerpt_s or recipe.excerpt_s
    dist = setup_distributed(args.device)
    torch.manual_seed(args.seed + dist.rank)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    files = scan(args.data)
    train_files, val_files = split_holdout(files, args.holdout_fraction)  # the same split as DAC's
    sr = config.backbone.sample_rate_hz
    sampler = ExcerptSampler(train_files, sr, excerpt_s, seed=args.seed * 1000 + dist.rank)
    val_clips, val_desc = validation_clips(val_files, sr, args.val_duration_s, args.val_per_group)
    data_card = describe_data(train_files, args.data)
    data_card["licences"] += [t for t in args.data_licence if t not in data_card["licences"]]
    holdout = [{"path": f.path, "group": f.group} for f in val_files]
    if dist.is_main:
        (out_dir / "holdout.json").write_text(json.dumps({"held_out_files": holdout, "validation_clips": val_desc},
                                                         indent=2) + "\n")

    generator = VRVQ(config).to(dist.device)
    discriminator = Discriminator(recipe.discriminator).to(dist.device)
    init_note = None
    trainer = VRVQTrainer(generator, discriminator, sample_rate_hz=sr, lr=args.lr, rate_weight=args.rate_weight,
                          importance_lr=args.importance_lr)
    start_step, start_wall = 0, 0.0
    if args.resume:
        start_step, start_wall, state_card = load_training_state(
            out_dir, model=MODEL, modules=trainer.modules(), optimizers=trainer.optimizers(),
            schedulers=trainer.schedulers())
        init_note = state_card.get("extra", {}).get("warm_start")
        print(f"resumed from step {start_step} ({start_wall / 3600:.2f} h of training)")
    elif args.init_from:
        init_note = warm_start(generator, discriminator, args.init_from)
        print(f"warm start from {init_note['path']} (DAC step {init_note['dac_steps']}, "
              f"discriminator {'loaded' if init_note['discriminator'] else 'fresh'})")
    trainer.generator = wrap_ddp(generator, dist)
    trainer.discriminator = wrap_ddp(discriminator, dist)
    device_text = device_description(dist.device) + (f" x {dist.world_size} processes" if dist.enabled else "")
    if dist.is_main:
        print(f"VRVQ {args.config}: {count_parameters(generator) / 1e6:.2f} M generator "
              f"({count_parameters(generator.importance) / 1e3:.1f} k importance net), "
              f"{count_parameters(discriminator) / 1e6:.2f} M discriminator parameters; "
              f"{len(train_files)} training files, {len(val_files)} held out; device {device_text}")

    nq = config.n_codebooks
    last_val: dict[str, float] = {}

    def step_fn(step: int) -> dict[str, float]:
        return trainer.step(sampler.batch(batch_size).to(dist.device), adversarial=step > args.adv_start_step)

    def validate_fn(step: int) -> dict[str, float]:
        if not dist.is_main:
            return {}
        last_val.clear()
        for key, kwargs in ((f"n{nq}", {"n_codebooks": nq}), (_level_name(VAL_LEVEL), {"level": VAL_LEVEL})):
            for k, v in evaluate(generator, val_clips, sr, **kwargs).items():
                last_val[f"val/{key}/{k}"] = v
        return dict(last_val)

    def save_fn(step: int, wall_s: float, final: bool) -> None:
        if not dist.is_main:
            return
        save_training_state(out_dir, step, wall_s, model=MODEL, config=config.to_dict(),
                            modules=trainer.modules(), optimizers=trainer.optimizers(),
                            schedulers=trainer.schedulers(),
                            extra={"config_name": args.config, "warm_start": init_note})
        validation: dict = {"clips": len(val_desc), "duration_s_each": args.val_duration_s,
                            "groups": sorted({d["group"] for d in val_desc}),
                            "kbps_note": "payload kbps: 10 bits per active code + ceil(log2 N_q) bits per frame "
                                         "of side information in VBR; header not counted"}
        if final:
            validation.update(full_validation(generator, val_clips, sr, nq))
        else:
            validation["last"] = {k.removeprefix("val/"): round(v, 4) for k, v in
                                  (last_val or validate_fn(step)).items()}
        card = export_card(args.config, config, step=step, wall_s=wall_s, device=device_text, data=data_card,
                           holdout=holdout, validation=validation, batch_size=batch_size * dist.world_size,
                           excerpt_s=excerpt_s, rate_weight=args.rate_weight, init=init_note,
                           num_parameters=count_parameters(generator), lr=args.lr,
                           adv_start_step=args.adv_start_step, discriminator=recipe.discriminator.to_dict(),
                           importance_lr=args.importance_lr)
        save_checkpoint(out_dir / f"vrvq_{args.config}.safetensors", module_tensors("generator", generator), card,
                        half=args.half)

    log = CsvLog(out_dir / "log.csv") if dist.is_main else None
    val_log = CsvLog(out_dir / "val.csv") if dist.is_main else None
    t = time.time()
    step, wall_s = train_loop(step_fn=step_fn, total_steps=args.steps, start_step=start_step,
                              start_wall_s=start_wall, checkpoint_every=args.checkpoint_every,
                              validate_every=args.validate_every, log_every=args.log_every, save_fn=save_fn,
                              validate_fn=validate_fn, log=log, val_log=val_log, is_main=dist.is_main,
                              desc=f"vrvq {args.config}")
    if dist.is_main:
        print(f"done: step {step}, {time.time() - t:.0f} s this session; "
              f"weights in {out_dir}/vrvq_{args.config}.safetensors")
    if dist.enabled:
        torch.distributed.destroy_process_group()
    return 0
