"""Generic training-loop pieces shared by the in-repo codecs (DAC, VRVQ, EuleroDec).

* optimisers and schedules (DAC: AdamW lr 1e-4, betas (0.8, 0.99), ExponentialLR 0.999996 per step),
  gradient clipping;
* distributed setup under ``torchrun`` (DistributedDataParallel; rank 0 logs and saves);
* a CSV loss log, a tqdm progress bar, periodic validation and checkpoints, and ``--resume`` from the
  last saved training state (safetensors + JSON, like every checkpoint here);
* SIGTERM/Ctrl-C save the training state before exiting, so a stopped run loses nothing.

A model recipe supplies ``step_fn(step) -> {name: float}``, ``validate_fn(step) -> {name: float}``
and ``save_fn(step, final)``; :func:`train_loop` does the rest.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Never

import torch

from bench.errors import UserError
from bench.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    module_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)

ADAMW_LR = 1e-4
ADAMW_BETAS = (0.8, 0.99)
LR_GAMMA = 0.999996


def make_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], lr: float = ADAMW_LR,
                   betas: tuple[float, float] = ADAMW_BETAS) -> torch.optim.AdamW:
    """AdamW over ``params`` (parameters, or parameter groups with their own settings)."""
    return torch.optim.AdamW(params, lr=lr, betas=betas)


def make_scheduler(optimizer: torch.optim.Optimizer, gamma: float = LR_GAMMA) -> torch.optim.lr_scheduler.ExponentialLR:
    """Exponential decay applied once per training step."""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def clip_gradients(module: torch.nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm; returns the norm before clipping (inf/nan when it exploded)."""
    return float(torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm))


# ---- distributed ---------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    """This process's place in a (possibly single-process) run and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, validates and saves."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process (DistributedDataParallel in use)."""
        return self.world_size > 1


def setup_distributed(device: str | None) -> DistInfo:
    """Read torchrun's environment; initialise the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA device is available")
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def wrap_ddp(module: torch.nn.Module, dist: DistInfo) -> torch.nn.Module:
    """``module`` under DistributedDataParallel when the run has several processes, else itself."""
    if not dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(module, "module", module)


def device_description(device: torch.device) -> str:
    """The device in words, for logs and cards (GPU name, or CPU with threads and cores)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} thread(s), {os.cpu_count()} core(s) on the host)"


def git_commit() -> str | None:
    """The repository's current commit (None outside a git checkout), recorded in cards."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ---- logging ---------------------------------------------------------------------------------------------
class CsvLog:
    """Append-only CSV: ``step``, ``wall_s`` and named values. When a row brings a new name (say the
    adversarial terms once a warm-up ends), the file is rewritten once with the wider header."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), None)

    def write(self, step: int, wall_s: float, values: dict[str, float]) -> None:
        """Append one row (widening the header first when ``values`` brings new names)."""
        row: dict[str, Any] = {"step": step, "wall_s": round(wall_s, 2)}
        row.update({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()})
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writeheader()
        new = [k for k in row if k not in self.fields]
        if new:
            with open(self.path, newline="") as f:
                old_rows = list(csv.DictReader(f))
            self.fields = self.fields + new
            tmp = self.path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
                writer.writeheader()
                writer.writerows(old_rows)
            os.replace(tmp, self.path)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(row)


class Averager:
    """Running means of named floats between log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        """Add one step's values."""
        self.count += 1
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def pop(self) -> dict[str, float]:
        """The means since the last pop; starts over."""
        out = {k: v / max(1, self.count) for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


# ---- training state for --resume -------------------------------------------------------------------------
STATE_NAME = "train_state"


def save_training_state(out_dir: str | Path, step: int, wall_s: float, *, model: str, config: dict,
                        modules: Mapping[str, torch.nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                        schedulers: Mapping[str, Any], extra: dict | None = None) -> Path:
    """Everything needed to resume: weights, optimiser moments, schedules, step, wall time."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update(module_tensors(name, module))
    opt_meta = {}
    for name, opt in optimizers.items():
        t, meta = optimizer_tensors(f"optim.{name}", opt)
        tensors.update(t)
        opt_meta[name] = meta
    card = {"model": model, "config": config, "kind": "training-state", "step": step, "wall_time_s": wall_s,
            "optimizers": opt_meta, "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "extra": extra or {}}
    return save_checkpoint(Path(out_dir) / f"{STATE_NAME}.safetensors", tensors, card)


def load_training_state(out_dir: str | Path, *, model: str, modules: Mapping[str, torch.nn.Module],
                        optimizers: Mapping[str, torch.optim.Optimizer], schedulers: Mapping[str, Any]
                        ) -> tuple[int, float, dict]:
    """Restore what :func:`save_training_state` wrote; returns (step, wall time, card)."""
    path = Path(out_dir) / f"{STATE_NAME}.safetensors"
    if not path.exists():
        raise CheckpointError(f"--resume: no training state in {out_dir} ({path.name} missing); run without --resume")
    tensors, card = load_checkpoint(path, model=model)
    for name, module in modules.items():
        load_module(module, tensors, name, source=str(path))
    for name, opt in optimizers.items():
        restore_optimizer(opt, f"optim.{name}", tensors, card["optimizers"][name])
    for name, sched in schedulers.items():
        sched.load_state_dict(card["schedulers"][name])
    return int(card["step"]), float(card.get("wall_time_s", 0.0)), card


# ---- the loop ----------------------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the loop through the saving path."""


def train_loop(*, step_fn: Callable[[int], dict[str, float]], total_steps: int, start_step: int = 0,
               start_wall_s: float = 0.0, checkpoint_every: int = 500, validate_every: int = 500,
               log_every: int = 10, save_fn: Callable[[int, float, bool], None],
               validate_fn: Callable[[int], dict[str, float]] | None = None, log: CsvLog | None = None,
               val_log: CsvLog | None = None, is_main: bool = True, desc: str = "train") -> tuple[int, float]:
    """Run steps ``start_step+1 .. total_steps``; returns (last completed step, total wall time).

    ``save_fn(step, wall_s, final)`` runs every ``checkpoint_every`` steps and once at the end,
    including when SIGTERM or Ctrl-C stops the run (the interrupted step is not counted).
    A non-finite loss stops the run with an error rather than saving a broken model.
    """
    from tqdm import tqdm

    t0 = time.time()
    step = start_step
    avg = Averager()

    def wall() -> float:
        return start_wall_s + time.time() - t0

    def on_term(signum: int, frame: Any) -> Never:  # noqa: ARG001
        raise _Stop()

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (signals can only be set there)
        old = None
    bar = tqdm(total=total_steps, initial=start_step, desc=desc, disable=not is_main, dynamic_ncols=True)
    stopped = False
    try:
        while step < total_steps:
            values = step_fn(step + 1)
            if any(not math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"non-finite training values at step {step + 1}: {values}")
            step += 1
            avg.add(values)
            bar.update(1)
            if step % log_every == 0 or step == total_steps:
                means = avg.pop()
                if is_main and log is not None:
                    log.write(step, wall(), means)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
            if validate_fn is not None and validate_every and step % validate_every == 0:
                val = validate_fn(step)
                target = val_log or log
                if is_main and val and target is not None:
                    target.write(step, wall(), val)
            if checkpoint_every and step % checkpoint_every == 0 and step < total_steps:
                save_fn(step, wall(), False)
    except (_Stop, KeyboardInterrupt):
        stopped = True
    finally:
        bar.close()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    save_fn(step, wall(), True)
    if stopped:
        print(f"stopped at step {step}; state saved, rerun with --resume to continue")
    return step, wall()
