"""Shared vocabulary: the frozen settings of a run.

``RunConfig`` is everything ``bench run`` was asked to do; it is frozen so that no stage of the
pipeline can change it behind another's back (derive a changed copy with ``dataclasses.replace``).
Items are :class:`bench.datasets.base.Item`. The rows the pipeline writes are typed here too
(:class:`CodedRow`, :class:`ResultRow`, :class:`SkippedRow`): one per table of ``bench.store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    device: str = "auto"  # "auto": CUDA when this machine has it, else the CPU (bench.devices)
    engine: str = "local"  # where codec work and scoring run: "local" or "ray"
    address: str | None = None  # the Ray cluster to join ("auto", "HOST:PORT"); None starts a local one
    channel_policy: str = "mono"
    loudness_lufs: float | None = None
    align: str = "xcorr"
    progress: bool = True
    refresh: bool = False  # recode and rescore everything instead of reusing the cache and finished rows


@dataclass(frozen=True)
class CodedRow:
    """One encode/decode of an item at an operating point (table ``coded``); failed ones carry the reason."""

    item_id: str
    codec: str
    op: str
    nominal_kbps: float
    measured_kbps: float | None = None
    n_bytes: int | None = None
    encode_s: float | None = None
    decode_s: float | None = None
    audio_s: float | None = None
    status: str = "ok"
    error: str | None = None
    cache_key: str | None = None
    timing: str | None = None  # how encode_s/decode_s were attributed (say, "batch of 8, split by duration")


@dataclass(frozen=True)
class ResultRow:
    """One metric value of one coded pair (table ``results``): NaN with ``error`` when it failed."""

    item_id: str
    codec: str
    op: str
    metric: str
    nominal_kbps: float | None
    measured_kbps: float | None
    value: float
    status: str = "ok"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    compute_s: float | None = None  # seconds of the metric call for this item (a batch's time over its size)


@dataclass(frozen=True)
class SkippedRow:
    """A metric that does not apply to an item (table ``skipped``), with the reason."""

    item_id: str
    codec: str
    op: str
    metric: str
    reason: str
