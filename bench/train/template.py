"""The training run every in-repo codec shares: ``bench train MODEL`` is this template plus the model's hooks.

    setup   CPU threads, device (DistributedDataParallel under torchrun), seed ``seed + rank``, output folder
    data    scan (``bench.train.data``) -> files of identical content share a hold-out unit -> hold-out
            split -> the split checked for overlap, and the training files against ``--check-overlap``'s
            evaluation set (``bench.train.overlap``) -> validation clips -> data card, ``holdout.json``
    model   the model's :class:`ModelRun` builds its networks and trainer
    start   ``--resume`` from ``OUT/train_state.safetensors``, else the model's fresh start (VRVQ's warm start)
    loop    ``bench.train.loop.train_loop`` with the model's step and validation; every checkpoint writes
            the training state and the exported ``MODEL_<config>.safetensors`` with its card
    done    a summary line; the process group is closed

A model supplies a :class:`ModelRun` subclass (what to build, one step, one validation, the card's own
fields) and its named recipes as data (:class:`Recipe`); everything above is written once, here.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Mapping, Protocol, TypeVar

import torch

from bench.errors import UserError
from bench.models.checkpoint import save_checkpoint
from bench.train.config import TrainConfig
from bench.train.data import (
    AudioFile,
    ExcerptSampler,
    describe_data,
    scan,
    split_holdout,
    validation_clips,
)
from bench.train.discriminators import DiscriminatorConfig
from bench.train.loop import (
    CsvLog,
    DistInfo,
    device_description,
    git_commit,
    load_training_state,
    save_training_state,
    setup_distributed,
    train_loop,
)
from bench.train.overlap import ContentHashes, dataset_overlap, holdout_overlap, share_units_of_copies

LICENCE = "weights: the project's own work; training data licences listed under training.data"


class ModelConfig(Protocol):
    """What the template needs of a model config: its plain-data form for cards and training states."""

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data."""
        ...


class ModelOptions(Protocol):
    """What the template reads from every model's options: the excerpt length (None: the recipe's)."""

    @property
    def excerpt_s(self) -> float | None:
        """Excerpt length in seconds, or None for the recipe's."""
        ...


C = TypeVar("C", bound=ModelConfig)
O = TypeVar("O", bound=ModelOptions)


@dataclass(frozen=True)
class Recipe(Generic[C]):
    """A named training setup: the model config and the defaults a run starts from.

    ``lr`` is the recipe's learning rate where it has one (EuleroDec; DAC and VRVQ take ``--lr``);
    ``discriminator`` is the discriminator of the GAN-trained codecs (DAC, VRVQ).
    """

    model: C
    batch_size: int
    excerpt_s: float = 0.38
    lr: float | None = None
    discriminator: DiscriminatorConfig | None = None


def get_recipe(recipes: Mapping[str, Recipe[C]], name: str, title: str) -> Recipe[C]:
    """The recipe called ``name``; an unknown name is a user error with a suggestion."""
    if name not in recipes:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown {title} config {name!r}.{did_you_mean(name, list(recipes))}")
    return recipes[name]


@dataclass(frozen=True)
class PreparedData:
    """The run's data: training and held-out files, validation clips, and what the card says about them."""

    train_files: list[AudioFile]
    val_files: list[AudioFile]
    val_clips: torch.Tensor  # [N, 1, T]
    val_desc: list[dict[str, Any]]  # one description per clip (path, group, start, duration)
    card: dict[str, Any]  # the card's ``training.data``
    holdout: list[dict[str, str]]  # the held-out files (path, group)

    @property
    def val_groups(self) -> list[str]:
        """The group of each validation clip, in clip order."""
        return [d["group"] for d in self.val_desc]


@dataclass(frozen=True)
class RunSetup(Generic[C, O]):
    """What the template has prepared when a model's :class:`ModelRun` is built."""

    cfg: TrainConfig[O]
    recipe: Recipe[C]
    config: C  # the model config of this run (the recipe's, with the options' overrides)
    dist: DistInfo
    out_dir: Path
    batch_size: int  # per process
    excerpt_s: float
    sample_rate_hz: int
    data: PreparedData
    sampler: ExcerptSampler
    device_text: str


class ModelRun(ABC, Generic[C, O]):
    """One model's part of a training run: the hooks the template calls, in the order listed here.

    Class attributes: ``name`` (checkpoint family and file prefix), ``title`` (for messages),
    ``recipes`` (name -> :class:`Recipe`), ``single_process`` (the reason the model cannot run under
    DDP, or None). The instance is built with the :class:`RunSetup` and builds its networks.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    recipes: ClassVar[Mapping[str, Recipe[Any]]]
    single_process: ClassVar[str | None] = None

    def __init__(self, setup: RunSetup[C, O]) -> None:
        self.setup = setup
        self.options: O = setup.cfg.options
        self.config: C = setup.config
        self.build()

    # --- before the model exists -----------------------------------------------------------
    @classmethod
    def model_config(cls, recipe: Recipe[C], options: O) -> C:
        """The run's model config: the recipe's, with what the options override."""
        return recipe.model

    @staticmethod
    @abstractmethod
    def sample_rate_hz(config: C) -> int:
        """The rate the model's audio runs at (training excerpts and validation clips are read at it)."""

    # --- building and starting -----------------------------------------------------------------
    @abstractmethod
    def build(self) -> None:
        """Build the networks and the trainer on ``setup.dist.device``."""

    @abstractmethod
    def training_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(modules, optimisers, schedulers) by name: what ``train_state`` saves and ``--resume`` restores."""

    def resumed(self, state_card: dict[str, Any]) -> None:
        """Take back what :meth:`state_extra` saved (called after ``--resume`` restored the state)."""

    def fresh_start(self) -> None:
        """Prepare a run that does not resume (VRVQ: the warm start from a DAC checkpoint)."""

    def distribute(self) -> None:
        """Wrap the networks for DistributedDataParallel (after the state is restored)."""

    @abstractmethod
    def summary(self) -> str:
        """One line printed before training: sizes, data, device."""

    def before_loop(self, start_step: int, start_wall_s: float) -> None:
        """Last preparations before the first step (EuleroDec: its k-means refit)."""

    # --- the loop ------------------------------------------------------------------------------
    @abstractmethod
    def step(self, step: int) -> dict[str, float]:
        """Training step ``step`` (1-based); returns the values to log."""

    @abstractmethod
    def validate(self, step: int) -> dict[str, float]:
        """Periodic validation on the held-out clips (main process only); returns the values to log."""

    # --- saving --------------------------------------------------------------------------------
    def state_extra(self) -> dict[str, Any]:
        """Model-specific data kept in the training state for :meth:`resumed`."""
        return {}

    @abstractmethod
    def validation(self, final: bool) -> dict[str, Any]:
        """The card's validation results (``final``: the full table of the last checkpoint)."""

    @abstractmethod
    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors of the exported checkpoint (what the codec adapter loads)."""

    @abstractmethod
    def card_facts(self) -> dict[str, Any]:
        """The card's model facts after ``config``: rates, codebooks, parameter count."""

    @abstractmethod
    def training_facts(self, step: int) -> dict[str, Any]:
        """The model's part of the card's ``training`` section (learning rates, recipe in words)."""

    def card_extra(self, validation: dict[str, Any]) -> dict[str, Any]:
        """Further card sections after ``validation`` (EuleroDec: codebooks, convergence)."""
        return {}

    @property
    def checkpoint_path(self) -> Path:
        """Where the exported checkpoint goes: ``OUT/<model>_<config>.safetensors``."""
        return self.setup.out_dir / f"{self.name}_{self.setup.cfg.config_name}.safetensors"


# --- data ----------------------------------------------------------------------------------------
def prepare_data(cfg: TrainConfig[Any], sample_rate_hz: int) -> PreparedData:
    """Scan, split, check and describe the training data; read the validation clips."""
    hashes = ContentHashes()
    files = share_units_of_copies(scan(list(cfg.data)), hashes)
    train_files, val_files = split_holdout(files, cfg.holdout_fraction)
    val_clips, val_desc = validation_clips(val_files, sample_rate_hz, cfg.val_duration_s, cfg.val_per_group)
    card = describe_data(train_files, list(cfg.data))
    card["licences"] += [t for t in cfg.data_licences if t not in card["licences"]]
    card["holdout_check"] = holdout_overlap(train_files, val_files, hashes)
    if cfg.check_overlap is not None:
        card["overlap_check"] = dataset_overlap(train_files, cfg.check_overlap, hashes)
    holdout = [{"path": f.path, "group": f.group} for f in val_files]
    return PreparedData(train_files, val_files, val_clips, val_desc, card, holdout)


def overlap_warnings(card: dict[str, Any]) -> list[str]:
    """One line per overlap check that found shared files (printed before training)."""
    lines = []
    for key in ("holdout_check", "overlap_check"):
        check = card.get(key)
        if check and check["overlapping_count"]:
            first = check["overlapping"][0]
            lines.append(f"warning: {check['overlapping_count']} training file(s) overlap {check['against']} "
                         f"(e.g. {first['train']} ~ {first['evaluation']} by {'+'.join(first['by'])}); "
                         f"listed in the card under training.data.{key}")
    return lines


def _write_holdout(out_dir: Path, data: PreparedData) -> None:
    """``holdout.json``: the held-out files and the validation clips (for scripts and later checks)."""
    text = json.dumps({"held_out_files": data.holdout, "validation_clips": data.val_desc}, indent=2) + "\n"
    (out_dir / "holdout.json").write_text(text)


# --- the run -------------------------------------------------------------------------------------
def _distributed(run_cls: type[ModelRun[Any, Any]], device: str | None) -> DistInfo:
    """The device and process group; refuses DDP for a model that cannot use it."""
    dist = setup_distributed(device)
    if dist.enabled and run_cls.single_process:
        raise UserError(f"{run_cls.title} training runs in one process ({run_cls.single_process}); "
                        "start it without torchrun")
    return dist


def prepare(run_cls: type[ModelRun[C, O]], cfg: TrainConfig[O]) -> RunSetup[C, O]:
    """Everything before the model: threads, recipe, device, seed, output folder, data, sampler."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    recipe: Recipe[C] = get_recipe(run_cls.recipes, cfg.config_name, run_cls.title)
    config = run_cls.model_config(recipe, cfg.options)
    dist = _distributed(run_cls, cfg.device)
    torch.manual_seed(cfg.seed + dist.rank)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sr = run_cls.sample_rate_hz(config)
    data = prepare_data(cfg, sr)
    if dist.is_main:
        _write_holdout(out_dir, data)
        for line in overlap_warnings(data.card):
            print(line, flush=True)
    excerpt_s = cfg.options.excerpt_s or recipe.excerpt_s
    sampler = ExcerptSampler(data.train_files, sr, excerpt_s, seed=cfg.seed * 1000 + dist.rank)
    device_text = device_description(dist.device) + (f" x {dist.world_size} processes" if dist.enabled else "")
    return RunSetup(cfg, recipe, config, dist, out_dir, cfg.batch_size or recipe.batch_size, excerpt_s, sr, data,
                    sampler, device_text)


def _start(run: ModelRun[Any, Any]) -> tuple[int, float]:
    """(first step, wall time so far): restored by ``--resume``, else (0, 0) after the model's fresh start."""
    setup = run.setup
    if not setup.cfg.resume:
        run.fresh_start()
        return 0, 0.0
    modules, optimizers, schedulers = run.training_state()
    step, wall_s, card = load_training_state(setup.out_dir, model=run.name, modules=modules, optimizers=optimizers,
                                             schedulers=schedulers)
    run.resumed(card)
    if setup.dist.is_main:
        print(f"resumed from step {step} ({wall_s / 3600:.2f} h of training)")
    return step, wall_s


def export_card(run: ModelRun[Any, Any], step: int, wall_s: float, validation: dict[str, Any]) -> dict[str, Any]:
    """The exported checkpoint's card: the shared fields around the model's own."""
    setup = run.setup
    training = {"steps": step, "wall_time_s": round(wall_s, 1), "device": setup.device_text,
                "batch_size": setup.batch_size * setup.dist.world_size, "excerpt_s": setup.excerpt_s,
                **run.training_facts(step),
                "data": setup.data.card, "holdout": setup.data.holdout, "git_commit": git_commit(),
                "torch": torch.__version__}
    return {"model": run.name, "name": f"{run.name}_{setup.cfg.config_name}", "config_name": setup.cfg.config_name,
            "config": setup.config.to_dict(), **run.card_facts(), "training": training, "validation": validation,
            **run.card_extra(validation), "licence": LICENCE}


def save(run: ModelRun[Any, Any], step: int, wall_s: float, final: bool) -> None:
    """A checkpoint (main process only): the training state, then the exported weights with their card."""
    setup = run.setup
    if not setup.dist.is_main:
        return
    modules, optimizers, schedulers = run.training_state()
    save_training_state(setup.out_dir, step, wall_s, model=run.name, config=setup.config.to_dict(), modules=modules,
                        optimizers=optimizers, schedulers=schedulers,
                        extra={"config_name": setup.cfg.config_name, **run.state_extra()})
    validation = {"clips": len(setup.data.val_desc), "duration_s_each": setup.cfg.val_duration_s,
                  **run.validation(final)}
    save_checkpoint(run.checkpoint_path, run.export_tensors(), export_card(run, step, wall_s, validation),
                    half=setup.cfg.half)


def _loop(run: ModelRun[Any, Any], start_step: int, start_wall_s: float) -> tuple[int, float]:
    """The training loop with the model's step and validation and the shared save."""
    setup, cfg = run.setup, run.setup.cfg
    main = setup.dist.is_main

    def validate(step: int) -> dict[str, float]:
        return run.validate(step) if main else {}

    def save_fn(step: int, wall_s: float, final: bool) -> None:
        save(run, step, wall_s, final)

    return train_loop(step_fn=run.step, total_steps=cfg.steps, start_step=start_step, start_wall_s=start_wall_s,
                      checkpoint_every=cfg.checkpoint_every, validate_every=cfg.validate_every,
                      log_every=cfg.log_every, save_fn=save_fn, validate_fn=validate,
                      log=CsvLog(setup.out_dir / "log.csv") if main else None,
                      val_log=CsvLog(setup.out_dir / "val.csv") if main else None, is_main=main,
                      desc=f"{run.name} {cfg.config_name}")


def run_training(run_cls: type[ModelRun[C, O]], cfg: TrainConfig[O]) -> int:
    """One whole training run of ``run_cls`` as configured by ``cfg``; returns the exit code (0)."""
    setup = prepare(run_cls, cfg)
    run = run_cls(setup)
    start_step, start_wall_s = _start(run)
    run.distribute()
    if setup.dist.is_main:
        print(run.summary(), flush=True)
    run.before_loop(start_step, start_wall_s)
    t0 = time.time()
    step, wall_s = _loop(run, start_step, start_wall_s)
    if setup.dist.is_main:
        print(f"done: step {step}, {time.time() - t0:.0f} s this session ({wall_s:.0f} s of training in all); "
              f"weights in {run.checkpoint_path}")
    if setup.dist.enabled:
        torch.distributed.destroy_process_group()
    return 0


def rounded_validation(values: dict[str, float]) -> dict[str, float]:
    """Validation values for the card: ``val/`` prefix dropped, 4 decimals."""
    return {k.removeprefix("val/"): round(v, 4) for k, v in values.items()}
