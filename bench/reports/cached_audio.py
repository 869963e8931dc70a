"""Audio for a report's listening examples, read from the run's store and reconstruction cache only.

The run cached every prepared reference (the item after the channel policy and loudness
normalisation: exactly what the codecs were given) beside the reconstructions, keyed by its input
hash (``bench.cache.reference_key``), and each reconstruction's metadata names the input hash it
was coded from. So the coded rows of the store (``cache_key``) lead to both, and a report needs
neither the dataset (which may have moved or gone) nor the runner.

Every file is digest-checked as it is read (``ReconCache(readonly=True)``: nothing is removed or
written). A missing or damaged entry means no audio for that version, with the reason; never
another file in its place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.cache import ReconCache
from bench.reports.load import RunData

Clip = tuple[np.ndarray, int]  # (audio [C, T], sample rate in Hz)


class MissingAudio(LookupError):
    """No audio for one version of a listening example; the message says why (shown in the report)."""


class CachedAudioSource:
    """An audio source (``source(item_id, codec, op)``, ``codec=None`` for the reference) over a run's cache.

    Returns ``(audio, rate)``; None for a reconstruction the cache does not hold; raises
    :class:`MissingAudio` with the reason for a damaged entry or an unavailable reference.
    """

    def __init__(self, data: RunData, cache: ReconCache | None = None) -> None:
        """Read the cache named by the run's manifest (``cache_dir``), or ``cache``."""
        self.cache = cache if cache is not None else ReconCache(data.manifest.get("cache_dir"), readonly=True)
        self._keys = _cache_keys(data.coded)
        self._input_hashes: dict[str, str | None] = {}

    def __call__(self, item_id: str, codec: str | None, op: str | None) -> Clip | None:
        """The reference (``codec=None``) or one reconstruction of an item."""
        if codec is None:
            return self.reference(item_id)
        return self.reconstruction(item_id, codec, op)

    def reconstruction(self, item_id: str, codec: str, op: str | None) -> Clip | None:
        """A reconstruction from the cache; None when the run recorded none or the cache no longer has it."""
        key = self._keys.get((item_id, codec, str(op)))
        if key is None:
            return None
        n_problems = len(self.cache.problems)
        hit = self.cache.get(key)
        if hit is None:
            if len(self.cache.problems) > n_problems:
                raise MissingAudio(f"cached reconstruction is damaged ({self.cache.problems[-1]})")
            return None
        return hit[0], hit[1]

    def reference(self, item_id: str) -> Clip:
        """The prepared reference the codecs were given, from the cache."""
        input_hash = self.input_hash(item_id)
        if input_hash is None:
            raise MissingAudio("reference not in the cache (no cached reconstruction of this item names its "
                               "input; made before references were cached?)")
        n_problems = len(self.cache.problems)
        hit = self.cache.get_reference(input_hash)
        if hit is None:
            if len(self.cache.problems) > n_problems:
                raise MissingAudio(f"cached reference is damaged ({self.cache.problems[-1]})")
            raise MissingAudio(f"reference {input_hash[:12]} is not in the cache {self.cache.root}")
        return hit

    def input_hash(self, item_id: str) -> str | None:
        """The item's input hash, as named by the metadata of any of its cached reconstructions."""
        if item_id not in self._input_hashes:
            self._input_hashes[item_id] = self._find_input_hash(item_id)
        return self._input_hashes[item_id]

    def _find_input_hash(self, item_id: str) -> str | None:
        for (iid, _, _), key in sorted(self._keys.items()):
            if iid != item_id:
                continue
            meta = self.cache.meta(key)
            found = meta.get("input_hash") if meta else None
            if isinstance(found, str) and found:
                return found
        return None


def _cache_keys(coded: Any) -> dict[tuple[str, str, str], str]:
    """(item_id, codec, op) -> cache key of every coded row that has one."""
    keys: dict[tuple[str, str, str], str] = {}
    if "cache_key" not in coded:
        return keys
    for row in coded.itertuples():
        if isinstance(row.cache_key, str) and row.cache_key:
            keys[(str(row.item_id), str(row.codec), str(row.op))] = row.cache_key
    return keys
