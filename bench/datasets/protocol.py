"""The evaluation protocol: which audio is scored, and a record that proves it.

Documented in ``docs/datasets.md``; every run manifest carries :func:`protocol_manifest`.

* **Excerpting.** Speech corpora are scored on whole utterances (LibriTTS) or on fixed-length
  excerpts of long readings (DAPS). Music and general sound are scored on fixed-length excerpts
  (10 s, as DAC's evaluation does), chosen reproducibly: candidate offsets come from a generator
  seeded by (excerpt seed, item id); the first candidate whose integrated loudness reaches the
  threshold (-40 LUFS, DAC's ``loudness_cutoff``) wins, else the loudest candidate. Offsets are
  rounded to the millisecond. A file shorter than the excerpt is used whole. Choices are cached
  on disk (keyed by file size and mtime), so listing a corpus twice decodes nothing twice.
* **Subsampling** (``--limit N``): items are ranked by ``sha256(f"{seed}:{item.id}")`` and the
  first N kept, in the corpus order. The choice depends only on ids and seed (not on the
  platform or on numpy), and the subsets are nested: the N-item subset is inside the N+1 one.
* **Loudness.** Off by default (the codec sees the corpus level); ``--loudness -16`` normalises
  every reference to -16 LUFS (DAC's protocol) before coding, peak kept below full scale.
* **Item list hash.** sha256 over (id, start, duration, domain) of the final list
  (:func:`bench.datasets.base.item_list_hash`): equal hashes mean the same items were scored.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bench.datasets.base import Dataset, Item, item_list_hash

PROTOCOL_VERSION = 1
DEFAULT_EXCERPT_S = 10.0
DEFAULT_LOUDNESS_THRESHOLD_LUFS = -40.0
DEFAULT_NUM_TRIES = 8
EXCERPT_SEED = 0


@dataclass(frozen=True)
class ExcerptPolicy:
    """How a dataset cuts its files. ``duration_s=None`` means whole files."""

    duration_s: float | None = DEFAULT_EXCERPT_S
    loudness_threshold_lufs: float = DEFAULT_LOUDNESS_THRESHOLD_LUFS
    num_tries: int = DEFAULT_NUM_TRIES
    seed: int = EXCERPT_SEED

    def describe(self) -> dict[str, Any]:
        """The policy as a JSON-able dict for the run manifest, with the selection rule in words."""
        if self.duration_s is None:
            return {"kind": "whole files"}
        return {"kind": "fixed-length excerpt", **asdict(self),
                "selection": "first of num_tries seeded offsets reaching the loudness threshold, else the loudest"}


WHOLE = ExcerptPolicy(duration_s=None)


# --- subsampling ----------------------------------------------------------------------------


def _rank_key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def subsample(items: list[Item], limit: int | None, seed: int = 0) -> list[Item]:
    """A seeded subset of ``limit`` items, in the original order.

    Items are ranked by sha256 of ``"{seed}:{id}"``; the result depends only on ids and seed, and
    a smaller limit gives a subset of a larger one.
    """
    items = list(items)
    if limit is None or limit >= len(items):
        return items
    if limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    keep = {it.id for it in sorted(items, key=lambda it: _rank_key(seed, it.id))[:limit]}
    return [it for it in items if it.id in keep]


# --- excerpt selection ----------------------------------------------------------------------


def _rng_for(seed: int, item_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(hashlib.sha256(item_id.encode()).hexdigest()[:15], 16)])


def candidate_offsets(total_s: float, duration_s: float, item_id: str, policy: ExcerptPolicy) -> list[float]:
    """The seeded candidate start times (s, rounded to ms) for an item; [0.0] when it is short."""
    span = total_s - duration_s
    if span <= 0:
        return [0.0]
    rng = _rng_for(policy.seed, item_id)
    return [round(float(rng.uniform(0, span)), 3) for _ in range(policy.num_tries)]


def choose_excerpt_from_array(x: np.ndarray, sample_rate_hz: int, item_id: str,
                              policy: ExcerptPolicy) -> tuple[float, float | None]:
    """(start_s, duration_s) of the excerpt of ``x`` [C, T] the policy picks for ``item_id``.

    A signal no longer than the excerpt is used whole: (0.0, None).
    """
    from bench.audio import loudness_lufs

    total_s = x.shape[-1] / sample_rate_hz
    if policy.duration_s is None or total_s <= policy.duration_s:
        return 0.0, None
    n = int(round(policy.duration_s * sample_rate_hz))
    best: tuple[float, float] | None = None
    for start_s in candidate_offsets(total_s, policy.duration_s, item_id, policy):
        i = int(round(start_s * sample_rate_hz))
        lufs = loudness_lufs(x[..., i:i + n], sample_rate_hz)
        if lufs >= policy.loudness_threshold_lufs:
            return start_s, policy.duration_s
        if best is None or lufs > best[1]:
            best = (start_s, lufs)
    if best is None:  # no candidate was tried: num_tries < 1
        raise ValueError(f"excerpt policy needs num_tries >= 1, got {policy.num_tries}")
    return best[0], policy.duration_s


def _excerpt_cache_file(path: str, item_id: str, policy: ExcerptPolicy, stream_index: int) -> Path:
    from bench.config import cache_dir

    st = os.stat(path)
    key = json.dumps([PROTOCOL_VERSION, os.path.abspath(path), st.st_size, st.st_mtime_ns, item_id,
                      asdict(policy), stream_index])
    digest = hashlib.sha256(key.encode()).hexdigest()
    return cache_dir() / "excerpts" / digest[:2] / f"{digest}.json"


def choose_excerpt(path: str | Path, item_id: str, policy: ExcerptPolicy, *, stream_index: int = 0,
                   duration_hint_s: float | None = None) -> tuple[float, float | None]:
    """(start_s, duration_s) of the policy's excerpt of a file; cached on disk per file version.

    ``duration_hint_s`` (the file's length, when a CSV or header already says it) lets a file that
    is no longer than the excerpt skip decoding entirely.
    """
    if policy.duration_s is None:
        return 0.0, None
    if duration_hint_s is not None and duration_hint_s <= policy.duration_s:
        return 0.0, None
    path = str(path)
    cache_file = _excerpt_cache_file(path, item_id, policy, stream_index)
    if cache_file.is_file():
        try:
            got = json.loads(cache_file.read_text())
            return float(got["start_s"]), got["duration_s"]
        except (ValueError, KeyError):
            pass  # a damaged entry is recomputed
    from bench.audio import load_audio, to_channels

    audio = load_audio(path, stream_index=stream_index)
    mono = to_channels(audio.samples, 1)
    start_s, duration_s = choose_excerpt_from_array(mono, audio.sample_rate_hz, item_id, policy)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"start_s": start_s, "duration_s": duration_s}))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only cache only costs time
    return start_s, duration_s


def apply_excerpt(item: Item, policy: ExcerptPolicy, *, duration_hint_s: float | None = None) -> Item:
    """The item with ``start_s``/``duration_s`` chosen by the policy, recorded in its ``extra`` (a new item)."""
    if policy.duration_s is None:
        return item
    stream_index = int(item.extra.get("stream_index", 0))
    start_s, duration_s = choose_excerpt(item.path, item.id, policy, stream_index=stream_index,
                                         duration_hint_s=duration_hint_s)
    return replace(item, start_s=start_s, duration_s=duration_s,
                   extra={**item.extra, "excerpt": policy.describe()["kind"]})


# --- the record ---------------------------------------------------------------------------


def _dataset_facts(dataset: Dataset | str) -> dict[str, Any]:
    if isinstance(dataset, str):
        return {"name": dataset}
    facts: dict[str, Any] = {"name": dataset.name}
    policy = getattr(dataset, "excerpt_policy", WHOLE)
    facts["excerpt"] = policy.describe() if isinstance(policy, ExcerptPolicy) else str(policy)
    options = getattr(dataset, "options", None)
    if options:
        facts["options"] = dict(options)
    for attr in ("version", "variant"):
        if getattr(dataset, attr, None):
            facts[attr] = getattr(dataset, attr)
    return facts


def _describe_loudness(loudness_lufs: float | None) -> str:
    if loudness_lufs is None:
        return "off: references are coded at the corpus level"
    return f"normalised to {loudness_lufs:g} LUFS (ITU-R BS.1770, pyloudnorm) before coding, peak kept below 0.999"


def protocol_manifest(dataset: Dataset | str, split: str, items: Iterable[Item], *, limit: int | None = None,
                      seed: int = 0, loudness_lufs: float | None = None, **settings: Any) -> dict[str, Any]:
    """Everything needed to show that two runs scored the same audio the same way."""
    items = list(items)
    domains: dict[str, int] = {}
    for it in items:
        domains[it.domain] = domains.get(it.domain, 0) + 1
    facts = _dataset_facts(dataset)
    return {
        "protocol_version": PROTOCOL_VERSION,
        "dataset": facts.pop("name"),
        "split": split,
        **facts,
        "n_items": len(items),
        "domains": domains,
        "subsampling": ({"kind": "all items"} if limit is None else
                        {"kind": "seeded subset", "limit": limit, "seed": seed,
                         "method": "keep the `limit` items with the smallest sha256(f'{seed}:{id}'), corpus order"}),
        "loudness": {"target_lufs": loudness_lufs, "policy": _describe_loudness(loudness_lufs)},
        "item_list_sha256": item_list_hash(items),
        "item_list_hash_covers": ["id", "start_s", "duration_s", "domain"],
        **settings,
    }
