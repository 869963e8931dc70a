"""What one ``bench train MODEL`` run is told, as frozen data: the trainers take this, never argparse.

:class:`TrainConfig` holds the options every model shares (data, steps, output folder, device,
intervals, hold-out); its ``options`` field holds the model's own frozen options dataclass
(``DACOptions``, ``VRVQOptions``, ``EuleroDecOptions``, defined beside each trainer). The command
line (``bench.cli.train``) builds both from the parsed arguments, taking its defaults from the
field defaults here, so a default is written once. :class:`OverlapCheck` names an evaluation set
the training files are compared against (``--check-overlap DATASET[:SPLIT]``).

Nothing here imports torch: the command line reads these defaults to build ``--help``.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Generic, TypeVar

O = TypeVar("O")


@dataclass(frozen=True)
class OverlapCheck:
    """An evaluation set training must not contain: its items are compared with the training files."""

    dataset: str
    split: str | None = None
    root: str | None = None  # the dataset root, as ``bench run --root`` (None: the configured one)
    options: tuple[tuple[str, str], ...] = ()  # dataset options, as ``bench run --dataset-opt``

    @property
    def label(self) -> str:
        """``DATASET[:SPLIT]``, as the user wrote it: the card's ``against`` field."""
        return f"{self.dataset}:{self.split}" if self.split else self.dataset


@dataclass(frozen=True)
class TrainConfig(Generic[O]):
    """Every setting of one training run: the common ones here, the model's own in ``options``."""

    config_name: str  # the named recipe (``tiny``, ``small``, ``24k``, ``small6`` ...)
    data: tuple[str, ...]  # audio folders (``DIR`` or ``NAME=DIR``)
    steps: int  # total steps, including resumed ones
    out: str  # output folder: checkpoints, training state, logs
    options: O  # the model's own options (a frozen dataclass)
    device: str | None = None  # None: cuda when available, else cpu
    resume: bool = False
    batch_size: int | None = None  # items per step per process; None: the recipe's
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads; None: torch's default
    checkpoint_every: int = 250
    validate_every: int = 250  # 0: never
    log_every: int = 10
    holdout_fraction: float = 0.02
    val_per_group: int = 6
    val_duration_s: float = 3.0
    half: bool = False  # store exported weights as float16
    data_licences: tuple[str, ...] = ()  # licence notes for the card, beyond the recognised corpora
    check_overlap: OverlapCheck | None = None


def field_defaults(cls: type) -> dict[str, Any]:
    """The default of every field of dataclass ``cls`` that has one (for the command line's defaults)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
