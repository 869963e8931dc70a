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
The run around the model (data, hold-out, overlap checks, resume, checkpoints) is ``bench.train.template``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence, cast

import torch

from bench.models.eulerodec_model import (
    CONFIGS,
    EuleroDec,
    EuleroDecConfig,
    EuleroDecOutput,
    model_state_for_saving,
)
from bench.train.config import TrainConfig
from bench.train.data import AudioFile, ExcerptSampler
from bench.train.loop import clip_gradients, make_optimizer, make_scheduler
from bench.train.template import ModelRun, Recipe, rounded_validation, run_training

MODEL = "eulerodec"
GRAD_CLIP = 10.0
MEL_THRESHOLDS = (3.0, 2.5, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8)
RECIPE_TEXT = ("EuleroDec (arXiv 2601.17517), no discriminator: 7-scale mel L1 + compressed complex "
               "STFT L1 + complex spectral convergence + 0.05 commitment; EMA RVQ (decay 0.98->0.999), "
               "dead-code restarts from recent residuals; AdamW (0.9, 0.99), exponential LR decay")

RECIPES: dict[str, Recipe[EuleroDecConfig]] = {
    "6kbps": Recipe(CONFIGS["6kbps"], batch_size=16, excerpt_s=0.38, lr=3e-4),
    "12kbps": Recipe(CONFIGS["12kbps"], batch_size=16, excerpt_s=0.38, lr=3e-4),
    "small6": Recipe(CONFIGS["small6"], batch_size=4, excerpt_s=0.32, lr=1e-3),
    "small12": Recipe(CONFIGS["small12"], batch_size=4, excerpt_s=0.32, lr=1e-3),
    "tiny": Recipe(CONFIGS["tiny"], batch_size=2, excerpt_s=0.25, lr=3e-3),
}

#: k-means latents from random training excerpts of this length (``--kmeans-pool excerpts``)
KMEANS_EXCERPT_S = 2.0
#: where a training source can come from: random excerpts, or whole training files
LatentSource = ExcerptSampler | Sequence[AudioFile]


@dataclass(frozen=True)
class LossWeights:
    """Weights of EuleroDec's loss terms (all 1: the paper's sum)."""

    mel: float = 1.0
    spec: float = 1.0
    sc: float = 1.0
    commitment: float = 1.0  # beta is applied inside the quantiser


@dataclass(frozen=True)
class EuleroDecOptions:
    """EuleroDec's own training options (``bench train eulerodec --help``)."""

    lr: float | None = None  # AdamW; None: the recipe's
    lr_gamma: float = 0.99995  # exponential decay per step
    excerpt_s: float | None = None  # None: the recipe's
    kmeans_seconds: float = 0.0  # k-means refit on this much training audio (0: off, EMA only)
    kmeans_every: int = 0  # steps between refits (0: only at the start)
    kmeans_iters: int = 5  # Lloyd iterations per stage and refit
    kmeans_pool: str = "excerpts"  # "excerpts" (random) or "files" (whole training files, each once)
    kmeans_weight_by: str = "frame"  # "frame" or "residual" energy
    codebook_weight_power: float | None = None  # None: the config's
    frozen_norm_stats: bool = False  # whitening layers use their running statistics while training


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

    def loss_terms(self, real: torch.Tensor, out: EuleroDecOutput) -> dict[str, torch.Tensor]:
        """The loss terms of one batch (see the module docstring), unweighted."""
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
        """One optimiser step on ``real [B, 1, T]``; returns the values to log."""
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
                       "lr": float(self.sched.get_last_lr()[0]), "vq_decay": self.model.quantizer.current_decay()})
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
    device = next(model.parameters()).device
    mels, sdrs = [], []
    for i in range(0, clips.shape[0], batch_size):
        x = clips[i : i + batch_size].to(device)
        y = model(x, n_quantizers=n_quantizers).wav
        mels.append(mel(y, x).cpu())
        sdrs.append(si_sdr_db(y[:, 0].cpu().double(), x[:, 0].cpu().double()))
    model.train(was_training)
    return {"val/mel_distance": float(torch.cat(mels).mean()),
            "val/si_sdr_db": float(torch.nanmean(torch.cat(sdrs)))}


@torch.no_grad()
def collect_latents(model: EuleroDec, source: LatentSource, seconds: float, batch_size: int = 8,
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
        """Latent frames ``[N, H]`` of ``x``."""
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


def refit_codebooks(model: EuleroDec, source: LatentSource, seconds: float, iters: int,
                    frames_per_step: float, seed: int, weight_by: str = "frame") -> dict[str, Any]:
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
def heldout_usage(model: EuleroDec, files: Sequence[AudioFile], max_seconds: float = 600.0, target_lufs: float | None = -16.0
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
    usage_counts = cast(torch.Tensor, model.quantizer.usage_counts)  # a registered buffer
    out["vq/assignments"] = float(usage_counts[0].sum())
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


class EuleroDecRun(ModelRun[EuleroDecConfig, EuleroDecOptions]):
    """EuleroDec in the training template: one network, EMA codebooks, optional k-means refits."""

    name = MODEL
    title = "EuleroDec"
    recipes = RECIPES
    single_process = "EMA codebooks are not synchronised"

    @classmethod
    def model_config(cls, recipe: Recipe[EuleroDecConfig], options: EuleroDecOptions) -> EuleroDecConfig:
        """A copy of the recipe's config (the dataclass is mutable), with ``--codebook-weight-power``."""
        if options.codebook_weight_power is None:
            return replace(recipe.model)
        return replace(recipe.model, codebook_weight_power=float(options.codebook_weight_power))

    @staticmethod
    def sample_rate_hz(config: EuleroDecConfig) -> int:
        """The model's rate."""
        return config.sample_rate_hz

    @property
    def lr(self) -> float:
        """``--lr``, else the recipe's learning rate."""
        lr = self.options.lr or self.setup.recipe.lr
        if lr is None:
            raise ValueError(f"EuleroDec recipe {self.setup.cfg.config_name!r} has no learning rate")
        return lr

    def build(self) -> None:
        """The network and its trainer on the run's device; empty convergence records."""
        o = self.options
        self.model = EuleroDec(self.config).to(self.setup.dist.device)
        self.trainer = EuleroDecTrainer(self.model, lr=self.lr, lr_gamma=o.lr_gamma,
                                        frozen_norm_stats=o.frozen_norm_stats)
        self.convergence: dict[str, Any] = {"mel_thresholds": {}, "history": []}
        self.last_val: dict[str, float] = {}
        self.last_vq: dict[str, float] = {}
        self.t_start, self.start_wall_s = time.time(), 0.0

    def training_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The network, its optimiser and its schedule."""
        return {"model": self.model}, {"model": self.trainer.opt}, {"model": self.trainer.sched}

    def resumed(self, state_card: dict[str, Any]) -> None:
        """The convergence records so far."""
        self.convergence = state_card.get("extra", {}).get("convergence", self.convergence)

    def summary(self) -> str:
        """Size, rates, files and device."""
        c, data = self.config, self.setup.data
        return (f"EuleroDec {self.setup.cfg.config_name}: {self.model.num_parameters() / 1e6:.3f} M parameters, "
                f"{c.frame_rate_hz} frames/s, {c.nominal_kbps()} kbps; {len(data.train_files)} training files, "
                f"{len(data.val_files)} held out ({data.val_clips.shape[0]} validation clips); "
                f"device {self.setup.device_text}")

    def before_loop(self, start_step: int, start_wall_s: float) -> None:
        """Record this session's phase; the k-means pool and its first refit."""
        setup, o = self.setup, self.options
        self.t_start, self.start_wall_s = time.time(), start_wall_s
        self.convergence.setdefault("phases", []).append({
            "start_step": start_step, "batch_size": setup.batch_size, "excerpt_s": setup.excerpt_s, "lr": self.lr,
            "frozen_norm_stats": o.frozen_norm_stats, "kmeans_seconds": o.kmeans_seconds,
            "kmeans_every": o.kmeans_every, "dead_after_steps": self.config.dead_after_steps,
            "codebook_weight_power": self.config.codebook_weight_power})
        self.frames_per_step = setup.batch_size * self.model.latent_frames(setup.sampler.excerpt_samples)
        train_files = setup.data.train_files
        self.kmeans_source: LatentSource = (
            ExcerptSampler(train_files, setup.sample_rate_hz, KMEANS_EXCERPT_S, seed=setup.cfg.seed * 1000 + 7)
            if o.kmeans_pool == "excerpts" else train_files)
        self.refits: list[dict[str, Any]] = self.convergence.setdefault("kmeans_refits", [])
        if o.kmeans_seconds > 0:
            self.refit(start_step)

    def refit(self, step: int) -> None:
        """A k-means refit of the codebooks after ``step`` steps, recorded and printed."""
        o = self.options
        info = refit_codebooks(self.model, self.kmeans_source, o.kmeans_seconds, o.kmeans_iters, self.frames_per_step,
                               seed=self.setup.cfg.seed + step, weight_by=o.kmeans_weight_by)
        self.refits.append({"step": step, **info})
        print(f"step {step}: k-means refit on {info['frames']} latent frames in {info['wall_s']} s, perplexity "
              f"{[int(v) for v in info['perplexity']]}, relative error left {info['relative_error'][-1]}", flush=True)

    def step(self, step: int) -> dict[str, float]:
        """A refit when one is due, then one training step on a fresh batch."""
        o, done = self.options, step - 1  # steps completed before this one
        if o.kmeans_seconds > 0 and o.kmeans_every and done - self.refits[-1]["step"] >= o.kmeans_every:
            self.refit(done)
        return self.trainer.step(self.setup.sampler.batch(self.setup.batch_size).to(self.setup.dist.device))

    def _track(self, step: int, val: dict[str, float], vq: dict[str, float]) -> None:
        """Thresholds first passed and the history line of this validation."""
        wall_s = round(self.start_wall_s + time.time() - self.t_start, 1)
        mel_now = val["val/mel_distance"]
        for thr in MEL_THRESHOLDS:
            key = f"{thr:.2f}"
            if mel_now < thr and key not in self.convergence["mel_thresholds"]:
                self.convergence["mel_thresholds"][key] = {"step": step, "wall_s": wall_s}
        perplexities = [v for k, v in vq.items() if k.startswith("vq/perplexity/")]
        self.convergence["history"].append({
            "step": step, "wall_s": wall_s, "mel": round(mel_now, 4), "si_sdr_db": round(val["val/si_sdr_db"], 3),
            "mean_perplexity": round(sum(perplexities) / self.config.num_quantizers, 1)})

    def validate(self, step: int) -> dict[str, float]:
        """Mel distance, SI-SDR and the codebook statistics since the last validation (then reset)."""
        c = self.config
        val = evaluate(self.model, self.setup.data.val_clips)
        vq = codebook_report(self.model)
        self.model.quantizer.reset_stats()
        self._track(step, val, vq)
        collapsed = collapsed_stages(vq, c.codebook_size)
        print(f"step {step}: val mel {val['val/mel_distance']:.4f}, SI-SDR {val['val/si_sdr_db']:.2f} dB, perplexity "
              f"{[int(vq[f'vq/perplexity/{i + 1}']) for i in range(c.num_quantizers)]}"
              + (f" (stages under K/2: {collapsed})" if collapsed else ""), flush=True)
        self.last_val, self.last_vq = val, vq
        return {**val, **vq}

    def state_extra(self) -> dict[str, Any]:
        """The convergence records, so a resumed run continues them."""
        return {"convergence": self.convergence}

    def validation(self, final: bool) -> dict[str, Any]:
        """Prefix depths and held-out code usage in the final card, else the last validation."""
        clips, nq = self.setup.data.val_clips, self.config.num_quantizers
        if final:
            per_n = {str(n): rounded_validation(evaluate(self.model, clips, n)) for n in sorted({1, 2, 4, 6, 8, nq})}
            return {"per_n_codebooks": per_n,
                    "heldout_codebook_usage": heldout_usage(self.model, self.setup.data.val_files)}
        return {f"n_codebooks_{nq}": rounded_validation(self.last_val or evaluate(self.model, clips))}

    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The network's state, complex tensors as real views."""
        return model_state_for_saving(self.model)

    def card_facts(self) -> dict[str, Any]:
        """Rates, codebooks, nominal bitrate, parameter count, the complex-tensor convention."""
        c = self.config
        return {"sample_rate_hz": c.sample_rate_hz, "frame_rate_hz": c.frame_rate_hz, "n_codebooks": c.num_quantizers,
                "codebook_size": c.codebook_size, "nominal_kbps": c.nominal_kbps(),
                "num_parameters": self.model.num_parameters(),
                "complex_tensors": "stored as real [..., 2] views under NAME.__complex__"}

    def training_facts(self, step: int) -> dict[str, Any]:
        """Learning rate and the recipe in words."""
        return {"lr": self.lr, "recipe": RECIPE_TEXT}

    def card_extra(self, validation: dict[str, Any]) -> dict[str, Any]:
        """The codebook summary and the convergence records."""
        return {"codebooks": codebooks_section(self.last_vq, validation.get("heldout_codebook_usage"), self.config),
                "convergence": self.convergence}


OPTIONS = EuleroDecOptions


def train(config: TrainConfig[EuleroDecOptions]) -> int:
    """Train EuleroDec as ``config`` says (``bench train eulerodec``); returns the exit code."""
    return run_training(EuleroDecRun, config)
