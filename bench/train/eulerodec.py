"""Train EuleroDec: ``bench train eulerodec --config small6 --data DIR... --steps N --out DIR``.

The EuleroDec recipe (Cerovaz, Mancusi, Rodola, arXiv 2601.17517): no discriminator and no
post-filter; the loss is

    mel     DAC's 7-scale log-mel L1 (``bench.metrics.mel.MultiScaleMelDistance``, the metric itself)
  + spec    L1 between the compressed complex STFTs (n_fft 512, hop 64) of output and input, which
            penalises magnitude and phase errors together
  + sc      complex spectral convergence ||S - S_hat||_F / ||S||_F on the raw STFTs, per item
  + commitment (beta = 0.05 inside the quantiser; codebooks follow EMAs, no codebook loss)

with AdamW and an exponential learning-rate decay. Data: the shared pipeline (0.32 s excerpts by
default for the small configs, -16 LUFS, random phase shift, deterministic hold-out).

Every validation logs the mel distance and SI-SDR on the held-out clips, and, per RVQ stage, the
perplexity and the share of the 2048 codes used over the training steps since the previous
validation; the card records them and the first step at which the validation mel distance fell
below each of :data:`MEL_THRESHOLDS` (for comparing convergence with DAC on the same data).

Outputs in ``--out``: ``eulerodec_<config>.safetensors`` + ``.json`` (the file to benchmark with
``--codecs eulerodec:PATH``), ``train_state.*`` (``--resume``), ``log.csv``, ``val.csv``, ``holdout.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.cli.args import float_range, non_negative_int, positive_int
from bench.models.checkpoint import save_checkpoint
from bench.models.eulerodec_model import (
    EuleroDec,
    EuleroDecConfig,
    get_config,
    model_state_for_saving,
)
from bench.train.data import (
    ExcerptSampler,
    describe_data,
    scan,
    split_holdout,
    validation_clips,
)
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
)

MODEL = "eulerodec"
GRAD_CLIP = 10.0
MEL_THRESHOLDS = (3.0, 2.5, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8)


@dataclass(frozen=True)
class Recipe:
    batch_size: int
    excerpt_s: float
    lr: float


RECIPES = {
    "6kbps": Recipe(16, 0.38, 3e-4),
    "12kbps": Recipe(16, 0.38, 3e-4),
    "small6": Recipe(4, 0.32, 1e-3),
    "small12": Recipe(4, 0.32, 1e-3),
    "tiny": Recipe(2, 0.25, 3e-3),
}


@dataclass(frozen=True)
class LossWeights:
    mel: float = 1.0
    spec: float = 1.0
    sc: float = 1.0
    commitment: float = 1.0  # beta is applied inside the quantiser


def add_model_arguments(p: argparse._ArgumentGroup) -> None:
    p.add_argument("--lr", type=float_range(0.0, lo_open=True), default=None, help="AdamW learning rate (default per config)")
    p.add_argument("--lr-gamma", type=float_range(0.0, 1.0, lo_open=True), default=0.99995, help="exponential LR decay per step")
    p.add_argument("--excerpt-s", type=float_range(0.0, lo_open=True), default=None, help="excerpt length in seconds (default per config)")
    p.add_argument("--kmeans-seconds", type=float_range(0.0), default=0.0,
                   help="refit the codebooks by k-means on this much training audio (encoder latents) when the "
                        "run starts and every --kmeans-every steps (0: off, EMA only)")
    p.add_argument("--kmeans-every", type=non_negative_int, default=0, help="steps between k-means refits (0: only at the start)")
    p.add_argument("--kmeans-iters", type=positive_int, default=5, help="Lloyd iterations per stage and refit")
    p.add_argument("--kmeans-pool", choices=("excerpts", "files"), default="excerpts",
                   help="k-means latents from random training excerpts, or from whole training files (each once)")
    p.add_argument("--kmeans-weight-by", choices=("frame", "residual"), default="frame",
                   help="k-means weights from each frame's energy or from the energy of the stage's residual")
    p.add_argument("--codebook-weight-power", type=float_range(0.0), default=None,
                   help="override the config's inverse-energy weighting power of EMA updates and k-means refits")
    p.add_argument("--frozen-norm-stats", action="store_true",
                   help="whitening layers normalise with their running statistics while training (as at inference), "
                        "so the quantiser sees the same latents in training and in use; for fine-tuning")


class EuleroDecTrainer:
    """The model, its optimiser and the loss; ``step(batch)`` is one training step. Reusable in tests."""

    def __init__(self, model: EuleroDec, *, lr: float = 1e-3, lr_gamma: float = 0.99995,
                 weights: LossWeights | None = None, frozen_norm_stats: bool = False) -> None:
        from bench.metrics.mel import MultiScaleMelDistance

        self.model = model
        self.frozen_norm_stats = frozen_norm_stats
        self.weights = weights or LossWeights()
        self.mel = MultiScaleMelDistance(sample_rate_hz=model.cfg.sample_rate_hz)
        self.opt = make_optimizer(model.parameters(), lr=lr, betas=(0.9, 0.99))
        self.sched = make_scheduler(self.opt, gamma=lr_gamma)

    def loss_terms(self, real: torch.Tensor, out) -> dict[str, torch.Tensor]:
        fe = self.model.frontend
        spec_hat, spec = fe.stft(out.wav), fe.stft(real)
        diff = (spec_hat - spec).flatten(1)
        sc = diff.abs().pow(2).sum(1).sqrt() / spec.flatten(1).abs().pow(2).sum(1).sqrt().clamp_min(1e-5)
        spec_l1 = (fe.compress(spec_hat) - fe.compress(spec)).abs().mean()
        return {"mel": self.mel(out.wav, real).mean(), "spec": spec_l1, "sc": sc.mean(),
                "commitment": out.commitment}

    def train_mode(self) -> None:
        """Training mode; with ``frozen_norm_stats`` the whitening layers stay in eval mode (their
        affine parameters still learn, their statistics no longer move)."""
        from bench.models.complex import ComplexWhitening2d

        self.model.train()
        if self.frozen_norm_stats:
            for m in self.model.modules():
                if isinstance(m, ComplexWhitening2d):
                    m.eval()

    def step(self, real: torch.Tensor) -> dict[str, float]:
        self.train_mode()
        out = self.model(real)
        terms = self.loss_terms(real, out)
        total = sum(getattr(self.weights, k) * v for k, v in terms.items())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = clip_gradients(self.model, GRAD_CLIP)
        self.opt.step()
        self.sched.step()
        values = {f"loss/{k}": float(v.detach()) for k, v in terms.items()}
        values.update({"loss/total": float(total.detach()), "grad_norm": min(grad_norm, 1e9),
                       "lr": self.sched.get_last_lr()[0], "vq_decay": self.model.quantizer.current_decay()})
        return values


@torch.no_grad()
def evaluate(model: EuleroDec, clips: torch.Tensor, n_quantizers: int | None = None,
             batch_size: int = 4) -> dict[str, float]:
    """Mean mel distance and SI-SDR of ``clips [N, 1, T]`` through the quantiser (eval mode)."""
    from bench.metrics.mel import MultiScaleMelDistance
    from bench.metrics.si_sdr import si_sdr_db

    was_training = model.training
    model.eval()
    mel = MultiScaleMelDistance(sample_rate_hz=model.cfg.sample_rate_hz)
    mels, sdrs = [], []
    for i in range(0, clips.shape[0], batch_size):
        x = clips[i : i + batch_size]
        y = model(x, n_quantizers=n_quantizers).wav
        mels.append(mel(y, x))
        sdrs.append(si_sdr_db(y[:, 0].double(), x[:, 0].double()))
    model.train(was_training)
    return {"val/mel_distance": float(torch.cat(mels).mean()),
            "val/si_sdr_db": float(torch.nanmean(torch.cat(sdrs)))}


@torch.no_grad()
def collect_latents(model: EuleroDec, source, seconds: float, batch_size: int = 8,
                    target_lufs: float = -16.0) -> torch.Tensor:
    """Encoder latent frames [N, H] (complex, eval mode) of about ``seconds`` of training audio.

    ``source`` is an :class:`ExcerptSampler` (random excerpts, as training sees them) or a list of
    training files, encoded whole and loudness-normalised in a fixed shuffled order (every second
    of the corpus at most once: the most distinct frames a small corpus can give).
    """
    import random

    from bench.train.data import read_normalised

    was_training = model.training
    model.eval()
    frames, got = [], 0.0
    device = next(model.parameters()).device
    sr = model.cfg.sample_rate_hz

    def encode(x: torch.Tensor) -> torch.Tensor:
        return model.latent(x.to(device)).reshape(-1, model.cfg.latent_dim_complex)

    if isinstance(source, ExcerptSampler):
        while got < seconds:
            frames.append(encode(source.batch(batch_size)))
            got += batch_size * source.excerpt_s
    else:
        files = sorted(source, key=lambda f: f.path)
        random.Random(0).shuffle(files)
        for f in files:
            if got >= seconds:
                break
            wav, audible = read_normalised(f, sr, 0.0, f.duration_s, target_lufs)
            if not audible or wav.shape[-1] < model.cfg.samples_per_frame:
                continue
            frames.append(encode(torch.from_numpy(wav).float().view(1, 1, -1)))
            got += wav.shape[-1] / sr
    model.train(was_training)
    return torch.cat(frames)


def refit_codebooks(model: EuleroDec, source, seconds: float, iters: int,
                    frames_per_step: float, seed: int, weight_by: str = "frame") -> dict:
    """Weighted k-means refit of every RVQ stage on fresh training latents; returns what to log."""
    t0 = time.time()
    z = collect_latents(model, source, seconds)
    fit = model.quantizer.fit_kmeans(z, iters=iters, frames_per_step=frames_per_step, seed=seed,
                                     weight_by=weight_by)
    pool = "excerpts" if isinstance(source, ExcerptSampler) else "files"
    return {"frames": int(z.shape[0]), "seconds": round(seconds, 1), "pool": pool, "iters": iters,
            "weight_by": weight_by,
            "weight_power": model.quantizer.weight_power,
            "wall_s": round(time.time() - t0, 1), **fit}


def perplexity_estimates(counts: torch.Tensor) -> tuple[float, float]:
    """(plug-in, coverage-adjusted) perplexity ``exp(entropy)`` of code counts.

    The plug-in estimate is biased low when there are not many more frames than codes (a uniform
    2048-entry code measured on 4600 frames shows ~1600). The coverage-adjusted one is the
    Chao-Shen (2003) entropy estimator: Good-Turing coverage ``1 - singletons / N`` shrinks the
    observed frequencies, and a Horvitz-Thompson weight accounts for codes the sample missed.
    """
    c = counts[counts > 0].double()
    n = float(c.sum())
    if n == 0:
        return 1.0, 1.0
    p = c / n
    plug_in = float(torch.exp(-(p * p.log()).sum()))
    singletons = float((c == 1).sum())
    coverage = 1 - singletons / n if singletons < n else 1 - (singletons - 1) / n
    pa = coverage * p
    h = -(pa * pa.log() / (1 - (1 - pa) ** n)).sum()
    return plug_in, float(torch.exp(h))


@torch.no_grad()
def heldout_usage(model: EuleroDec, files: list, max_seconds: float = 600.0, target_lufs: float | None = -16.0
                  ) -> dict:
    """Per-stage perplexity and share of codes used when encoding whole held-out files (eval mode),
    with the perplexity a uniform code distribution would show on as many frames. Each file is
    loudness-normalised to ``target_lufs`` first (the level training excerpts have; None: as stored)."""
    from bench.train.data import read_normalised

    cfg = model.cfg
    was_training = model.training
    model.eval()
    counts = torch.zeros(cfg.num_quantizers, cfg.codebook_size)
    total = 0.0
    device = next(model.parameters()).device
    for f in files:
        if total >= max_seconds:
            break
        x = torch.from_numpy(read_normalised(f, cfg.sample_rate_hz, 0.0, f.duration_s, target_lufs)[0]).float()
        if x.numel() < cfg.samples_per_frame:
            continue
        codes = model.encode(x.view(1, 1, -1).to(device))[0].cpu()
        for stage in range(cfg.num_quantizers):
            counts[stage] += torch.bincount(codes[stage], minlength=cfg.codebook_size).float()
        total += x.numel() / cfg.sample_rate_hz
    model.train(was_training)
    n = int(counts[0].sum())

    g = torch.Generator().manual_seed(0)
    uniform = torch.bincount(torch.randint(0, cfg.codebook_size, (max(n, 1),), generator=g),
                             minlength=cfg.codebook_size).float()
    estimates = [perplexity_estimates(counts[i]) for i in range(cfg.num_quantizers)]
    return {"seconds": round(total, 1), "frames": n, "loudness_lufs": target_lufs,
            "uniform_perplexity_on_as_many_frames": round(perplexity_estimates(uniform)[0], 1),
            "perplexity": [round(plug_in, 1) for plug_in, _ in estimates],
            "perplexity_coverage_adjusted": [round(adjusted, 1) for _, adjusted in estimates],
            "usage_fraction": [round(float((counts[i] > 0).float().mean()), 4) for i in range(cfg.num_quantizers)]}


def codebook_report(model: EuleroDec) -> dict[str, float]:
    """Per-stage perplexity and usage since the last reset, flattened for the CSV log."""
    stats = model.quantizer.stats()
    out: dict[str, float] = {}
    for i, (ppl, use, rs) in enumerate(zip(stats["perplexity"], stats["usage"], stats["restarts"])):
        out[f"vq/perplexity/{i + 1}"] = ppl
        out[f"vq/usage/{i + 1}"] = use
        out[f"vq/restarts/{i + 1}"] = float(rs)
    out["vq/assignments"] = float(model.quantizer.usage_counts[0].sum())
    return out


def collapsed_stages(report: dict[str, float], codebook_size: int) -> list[int]:
    """Stages whose perplexity is under half the codebook size (the issue's collapse criterion)."""
    return [int(k.rsplit("/", 1)[1]) for k, v in report.items()
            if k.startswith("vq/perplexity/") and v < codebook_size / 2]


def codebooks_section(vq: dict[str, float], heldout: dict | None, config: EuleroDecConfig) -> dict:
    """The card's codebook summary: training-window statistics when steps ran since the last
    validation, and the collapse verdict from held-out usage when the final card measured it."""
    n = config.num_quantizers
    if vq:
        out = {"window": "training assignments between the last two validations",
               "assignments_per_stage": vq.get("vq/assignments"),
               "perplexity": [vq.get(f"vq/perplexity/{i + 1}") for i in range(n)],
               "usage_fraction": [vq.get(f"vq/usage/{i + 1}") for i in range(n)],
               "restarts": [vq.get(f"vq/restarts/{i + 1}") for i in range(n)],
               "collapsed_stages": collapsed_stages(vq, config.codebook_size)}
    else:
        out = {"window": "no training steps since the last validation or k-means refit"}
    if heldout:
        out["heldout_collapsed_stages"] = [i + 1 for i, p in enumerate(heldout["perplexity"])
                                           if p < config.codebook_size / 2]
        out["heldout_collapsed_stages_coverage_adjusted"] = [
            i + 1 for i, p in enumerate(heldout["perplexity_coverage_adjusted"]) if p < config.codebook_size / 2]
        out["heldout"] = "validation.heldout_codebook_usage"
    return out


def export_card(config_name: str, config: EuleroDecConfig, model: EuleroDec, *, step: int, wall_s: float,
                device: str, data: dict, holdout: list[dict], validation: dict, codebooks: dict,
                convergence: dict, batch_size: int, excerpt_s: float, lr: float) -> dict:
    return {
        "model": MODEL,
        "name": f"eulerodec_{config_name}",
        "config_name": config_name,
        "config": config.to_dict(),
        "sample_rate_hz": config.sample_rate_hz,
        "frame_rate_hz": config.frame_rate_hz,
        "n_codebooks": config.num_quantizers,
        "codebook_size": config.codebook_size,
        "nominal_kbps": config.nominal_kbps(),
        "num_parameters": model.num_parameters(),
        "complex_tensors": "stored as real [..., 2] views under NAME.__complex__",
        "training": {
            "steps": step, "wall_time_s": round(wall_s, 1), "device": device, "batch_size": batch_size,
            "excerpt_s": excerpt_s, "lr": lr,
            "recipe": "EuleroDec (arXiv 2601.17517), no discriminator: 7-scale mel L1 + compressed complex "
                      "STFT L1 + complex spectral convergence + 0.05 commitment; EMA RVQ (decay 0.98->0.999), "
                      "dead-code restarts from recent residuals; AdamW (0.9, 0.99), exponential LR decay",
            "data": data, "holdout": holdout, "git_commit": git_commit(), "torch": torch.__version__,
        },
        "validation": validation,
        "codebooks": codebooks,
        "convergence": convergence,
        "licence": "weights: the project's own work; training data licences listed under training.data",
    }


def train(args: argparse.Namespace) -> int:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.config not in RECIPES:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown EuleroDec config {args.config!r}.{did_you_mean(args.config, list(RECIPES))}")
    recipe = RECIPES[args.config]
    config = get_config(args.config)
    if args.codebook_weight_power is not None:
        config.codebook_weight_power = float(args.codebook_weight_power)
    batch_size = args.batch_size or recipe.batch_size
    excerpt_s = args.excerpt_s or recipe.excerpt_s
    lr = args.lr or recipe.lr
    dist = setup_distributed(args.device)
    if dist.enabled:
        raise RuntimeError("EuleroDec training runs in one process (EMA codebooks are not synchronised)")
    torch.manual_seed(args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    files = scan(args.data)
    train_files, val_files = split_holdout(files, args.holdout_fraction)
    sr = config.sample_rate_hz
    sampler = ExcerptSampler(train_files, sr, excerpt_s, seed=args.seed * 1000)
    val_clips, val_desc = validation_clips(val_files, sr, args.val_duration_s, args.val_per_group)
    data_card = describe_data(train_files, args.data)
    data_card["licences"] += [t for t in args.data_licence if t not in data_card["licences"]]
    holdout = [{"path": f.path, "group": f.group} for f in val_files]
    (out_dir / "holdout.json").write_text(json.dumps({"held_out_files": holdout, "validation_clips": val_desc},
                                                     indent=2) + "\n")

    model = EuleroDec(config).to(dist.device)
    trainer = EuleroDecTrainer(model, lr=lr, lr_gamma=args.lr_gamma, frozen_norm_stats=args.frozen_norm_stats)
    modules, optimizers, schedulers = {"model": model}, {"model": trainer.opt}, {"model": trainer.sched}
    start_step, start_wall = 0, 0.0
    convergence: dict = {"mel_thresholds": {}, "history": []}
    if args.resume:
        start_step, start_wall, card = load_training_state(out_dir, model=MODEL, modules=modules,
                                                           optimizers=optimizers, schedulers=schedulers)
        convergence = card.get("extra", {}).get("convergence", convergence)
        print(f"resumed from step {start_step} ({start_wall / 3600:.2f} h of training)")
    device_text = device_description(dist.device)
    print(f"EuleroDec {args.config}: {model.num_parameters() / 1e6:.3f} M parameters, "
          f"{config.frame_rate_hz} frames/s, {config.nominal_kbps()} kbps; {len(train_files)} training files, "
          f"{len(val_files)} held out ({val_clips.shape[0]} validation clips); device {device_text}", flush=True)

    last: dict[str, dict] = {"val": {}, "vq": {}}
    t_start = time.time()

    convergence.setdefault("phases", []).append({
        "start_step": start_step, "batch_size": batch_size, "excerpt_s": excerpt_s, "lr": lr,
        "frozen_norm_stats": args.frozen_norm_stats, "kmeans_seconds": args.kmeans_seconds,
        "kmeans_every": args.kmeans_every, "dead_after_steps": config.dead_after_steps,
        "codebook_weight_power": config.codebook_weight_power})
    frames_per_step = batch_size * model.latent_frames(sampler.excerpt_samples)
    kmeans_source = (ExcerptSampler(train_files, sr, 2.0, seed=args.seed * 1000 + 7)
                     if args.kmeans_pool == "excerpts" else train_files)
    refits: list = convergence.setdefault("kmeans_refits", [])

    def refit(step: int) -> None:
        info = refit_codebooks(model, kmeans_source, args.kmeans_seconds, args.kmeans_iters, frames_per_step,
                               seed=args.seed + step, weight_by=args.kmeans_weight_by)
        refits.append({"step": step, **info})
        print(f"step {step}: k-means refit on {info['frames']} latent frames in {info['wall_s']} s, perplexity "
              f"{[int(v) for v in info['perplexity']]}, relative error left {info['relative_error'][-1]}", flush=True)

    if args.kmeans_seconds > 0:
        refit(start_step)

    def step_fn(step: int) -> dict[str, float]:
        done = step - 1  # steps completed before this one
        if args.kmeans_seconds > 0 and args.kmeans_every and done - refits[-1]["step"] >= args.kmeans_every:
            refit(done)
        return trainer.step(sampler.batch(batch_size).to(dist.device))

    def validate_fn(step: int) -> dict[str, float]:
        val = evaluate(model, val_clips)
        vq = codebook_report(model)
        model.quantizer.reset_stats()
        wall_s = start_wall + time.time() - t_start
        mel_now = val["val/mel_distance"]
        for thr in MEL_THRESHOLDS:
            key = f"{thr:.2f}"
            if mel_now < thr and key not in convergence["mel_thresholds"]:
                convergence["mel_thresholds"][key] = {"step": step, "wall_s": round(wall_s, 1)}
        convergence["history"].append({"step": step, "wall_s": round(wall_s, 1), "mel": round(mel_now, 4),
                                       "si_sdr_db": round(val["val/si_sdr_db"], 3),
                                       "mean_perplexity": round(sum(v for k, v in vq.items()
                                                                    if k.startswith("vq/perplexity/")) /
                                                                config.num_quantizers, 1)})
        collapsed = collapsed_stages(vq, config.codebook_size)
        print(f"step {step}: val mel {mel_now:.4f}, SI-SDR {val['val/si_sdr_db']:.2f} dB, perplexity "
              f"{[int(vq[f'vq/perplexity/{i + 1}']) for i in range(config.num_quantizers)]}"
              + (f" (stages under K/2: {collapsed})" if collapsed else ""), flush=True)
        last["val"], last["vq"] = val, vq
        return {**val, **vq}

    def save_fn(step: int, wall_s: float, final: bool) -> None:
        save_training_state(out_dir, step, wall_s, model=MODEL, config=config.to_dict(), modules=modules,
                            optimizers=optimizers, schedulers=schedulers,
                            extra={"config_name": args.config, "convergence": convergence})
        validation: dict = {"clips": len(val_desc), "duration_s_each": args.val_duration_s}
        if final:
            per_n = {}
            for n in sorted({1, 2, 4, 6, 8, config.num_quantizers}):
                per_n[str(n)] = {k.removeprefix("val/"): round(v, 4) for k, v in
                                 evaluate(model, val_clips, n).items()}
            validation["per_n_codebooks"] = per_n
            validation["heldout_codebook_usage"] = heldout_usage(model, val_files)
        else:
            metrics = last["val"] or evaluate(model, val_clips)
            validation[f"n_codebooks_{config.num_quantizers}"] = {k.removeprefix("val/"): round(v, 4)
                                                                  for k, v in metrics.items()}
        codebooks = codebooks_section(last["vq"], validation.get("heldout_codebook_usage"), config)
        card = export_card(args.config, config, model, step=step, wall_s=wall_s, device=device_text,
                           data=data_card, holdout=holdout, validation=validation, codebooks=codebooks,
                           convergence=convergence, batch_size=batch_size, excerpt_s=excerpt_s, lr=lr)
        save_checkpoint(out_dir / f"eulerodec_{args.config}.safetensors", model_state_for_saving(model), card,
                        half=args.half)

    log = CsvLog(out_dir / "log.csv")
    val_log = CsvLog(out_dir / "val.csv")
    step, wall_s = train_loop(step_fn=step_fn, total_steps=args.steps, start_step=start_step,
                              start_wall_s=start_wall, checkpoint_every=args.checkpoint_every,
                              validate_every=args.validate_every, log_every=args.log_every, save_fn=save_fn,
                              validate_fn=validate_fn, log=log, val_log=val_log, desc=f"eulerodec {args.config}")
    print(f"done: step {step}, {wall_s:.0f} s of training; weights in {out_dir}/eulerodec_{args.config}.safetensors")
    return 0
