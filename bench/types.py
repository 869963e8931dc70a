"""Shared vocabulary: the frozen settings of a run.

``RunConfig`` is everything ``bench run`` was asked to do; it is frozen so that no stage of the
pipeline can change it behind another's back (derive a changed copy with ``dataclasses.replace``).
Items are :class:`bench.datasets.base.Item`; result rows are :mod:`bench.store`'s tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the content domains an item can have; metrics and datasets apply per domain
DOMAINS = ("speech", "music", "general")


@dataclass(frozen=True)
class RunConfig:
    """What a run was asked to do (codecs, dataset, metrics, policies); see ``bench run --help``."""

    codecs: str = "all"
    dataset: str | None = None
    split: str | None = None
    root: str | None = None
    dataset_options: dict[str, str] = field(default_factory=dict)
    metrics: str | None = None
    limit: int | None = None
    seed: int = 0
    item_ids: list[str] | None = None
    out_dir: str | None = None
    cache_dir: str | None = None
    workers: int | None = None
    device: str = "cpu"
    channel_policy: str = "mono"
    loudness_lufs: float | None = None
    align: str = "xcorr"
    progress: bool = True
    refresh: bool = False  # recode and rescore everything instead of reusing the cache and finished rows
