"""The Dataset interface and the evaluation item.

A dataset knows its splits, finds its files under a root directory (flag, ``BENCH_DATA_ROOT``
or the config file; see ``bench.config``), and yields :class:`Item` objects with a stable id.
Missing data raises :class:`DataMissingError` whose message names the command that fetches it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from bench.errors import UserError
from bench.registry import DATASETS


class DataMissingError(UserError, FileNotFoundError):
    """The dataset is not on disk; the message says how to get it."""


@dataclass(frozen=True)
class Item:
    """One evaluation item. ``start_s``/``duration_s`` select an excerpt of the file (None = whole).

    Frozen: a dataset makes it and no later stage changes it (derive a copy with
    ``dataclasses.replace``); ``extra`` holds dataset-specific facts (stream index, excerpt policy).
    """

    id: str
    path: str
    domain: str  # "speech", "music" or "general"
    dataset: str = ""
    split: str = ""
    transcript: str | None = None
    speaker: str | None = None
    track: str | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cluster(self) -> str:
        """Unit for cluster bootstrap: speaker or track where known, else the item itself."""
        return self.speaker or self.track or self.id

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-able dict (``extra`` deep-copied), for manifests and item lists."""
        return asdict(self)


class Dataset(ABC):
    """A named set of evaluation items with splits and domains; subclasses implement :meth:`items`."""

    name: str = ""
    splits: tuple[str, ...] = ()
    default_split: str = ""
    domains: tuple[str, ...] = ()
    description: str = ""
    licence: str = ""

    @abstractmethod
    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """Yield the items of a split in a stable order."""

    def check_split(self, split: str | None) -> str:
        """``split`` or the default split; a split the dataset does not have is a UserError with a hint."""
        split = split or self.default_split
        if self.splits and split not in self.splits:
            from bench.registry import did_you_mean

            raise UserError(f"{self.name} has no split {split!r}.{did_you_mean(split, list(self.splits))}")
        return split


def register_dataset(dataset: Dataset) -> Dataset:
    """Add ``dataset`` to the registry under its name and return it; each dataset module calls it at import."""
    return DATASETS.register(dataset.name, dataset)


def item_list_hash(items: list[Item]) -> str:
    """Content hash of an item list (ids, excerpt bounds, domains) so two runs can show they match."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.id, it.start_s, it.duration_s, it.domain], sort_keys=True).encode())
    return h.hexdigest()


# --- selection: --dataset, --split, --dataset-opt, --items, --limit ---------------------------------

def resolve_dataset(name: str | None, split: str | None, options: dict[str, str] | None = None) -> tuple[Dataset, str]:
    """(dataset object, split). ``--split test-other`` alone means the dataset that has that split (LibriTTS first)."""
    if name:
        ds = DATASETS.get(name)
    elif split:
        owners = [d for _, d in DATASETS.items() if split in d.splits]
        if not owners:
            raise UserError(f"no dataset has a split {split!r}; pass --dataset (see `bench ls datasets`)")
        owners.sort(key=lambda d: d.name != "libritts")
        ds = owners[0]
    else:
        ds = DATASETS.get("demo")
    if options:
        configure = getattr(ds, "configure", None)
        if configure is None:
            raise UserError(f"dataset {ds.name!r} takes no options (got {sorted(options)})")
        ds = configure(**options) or ds
    return ds, ds.check_split(split)


def select_items(ds: Dataset, split: str, root: str | Path | None = None, *, item_ids: list[str] | None = None,
                 limit: int | None = None, seed: int = 0) -> list[Item]:
    """The items of a split, restricted to ``item_ids`` and to a seeded random subset of ``limit``."""
    items = [it if (it.dataset and it.split) else replace(it, dataset=it.dataset or ds.name, split=it.split or split)
             for it in ds.items(split, root)]
    if item_ids is not None:
        wanted = set(item_ids)
        items = [it for it in items if it.id in wanted]
        missing = wanted - {it.id for it in items}
        if missing:
            raise UserError(f"{len(missing)} requested item id(s) not in {ds.name}/{split}, e.g. {sorted(missing)[:3]}")
    if limit is not None and limit < len(items):
        from bench.datasets.protocol import subsample

        items = subsample(items, limit, seed)
    return items
