"""Evaluation protocol: seeded subsampling, reproducible loudness-gated excerpts, the manifest record."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bench.datasets.base import Item, item_list_hash
from bench.datasets.protocol import (ExcerptPolicy, apply_excerpt, candidate_offsets, choose_excerpt,
                                     choose_excerpt_from_array, protocol_manifest, subsample)


def _items(n):
    return [Item(id=f"spk{i % 7}/utt{i:04d}", path=f"/x/{i}.wav", domain="speech") for i in range(n)]


def test_subsample_seeded_stable_nested():
    items = _items(200)
    a = subsample(items, 20, seed=0)
    assert [it.id for it in a] == [it.id for it in subsample(list(reversed(items)), 20, 0)][::-1]
    assert len(a) == 20 and len({it.id for it in a}) == 20
    # corpus order is kept
    order = [it.id for it in items]
    assert [order.index(it.id) for it in a] == sorted(order.index(it.id) for it in a)
    # another seed, another subset; a smaller limit is a subset of a larger one
    assert {it.id for it in subsample(items, 20, 1)} != {it.id for it in a}
    assert {it.id for it in subsample(items, 10, 0)} <= {it.id for it in a}
    assert subsample(items, None, 0) == items and subsample(items, 500, 0) == items
    with pytest.raises(ValueError):
        subsample(items, -1, 0)


def test_subsample_known_values():
    """Pinned: the subset depends only on ids and seed, so it must never change across platforms."""
    assert [it.id for it in subsample(_items(50), 3, seed=0)] == ["spk1/utt0008", "spk5/utt0012", "spk1/utt0029"]


def test_excerpt_skips_silence_and_is_reproducible():
    sr = 8000
    rng = np.random.default_rng(0)
    x = np.zeros((1, 60 * sr), dtype=np.float32)
    x[0, 40 * sr:55 * sr] = 0.1 * rng.standard_normal(15 * sr)  # only 40-55 s is audible
    policy = ExcerptPolicy(duration_s=10.0, num_tries=64)
    start, dur = choose_excerpt_from_array(x, sr, "track-a", policy)
    assert dur == 10.0
    # the excerpt must contain enough of the audible part to reach -40 LUFS
    assert 30.0 < start < 55.0
    assert (start, dur) == choose_excerpt_from_array(x, sr, "track-a", policy)
    assert candidate_offsets(60.0, 10.0, "track-a", policy) != candidate_offsets(60.0, 10.0, "track-b", policy)
    # all silent: the loudest candidate (here any) is still a valid window
    s2, d2 = choose_excerpt_from_array(np.zeros((1, 30 * sr), np.float32), sr, "quiet", policy)
    assert 0 <= s2 <= 20 and d2 == 10.0
    # short signals are used whole
    assert choose_excerpt_from_array(x[:, : 5 * sr], sr, "short", policy) == (0.0, None)


def test_choose_excerpt_file_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    sr = 8000
    x = 0.1 * np.random.default_rng(1).standard_normal(25 * sr).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, x, sr)
    policy = ExcerptPolicy(duration_s=5.0)
    first = choose_excerpt(path, "a", policy)
    assert list((tmp_path / "cache" / "excerpts").rglob("*.json"))
    assert choose_excerpt(path, "a", policy) == first
    item = apply_excerpt(Item(id="a", path=str(path), domain="music"), policy)
    assert (item.start_s, item.duration_s) == first and 0 <= item.start_s <= 20
    assert choose_excerpt(path, "a", policy, duration_hint_s=4.0) == (0.0, None)


def test_protocol_manifest_records_everything():
    items = subsample(_items(30), 5, seed=3)
    m = protocol_manifest("libritts", "test-other", items, limit=5, seed=3, loudness_lufs=-16.0, channel_policy="mono")
    assert m["dataset"] == "libritts" and m["split"] == "test-other" and m["n_items"] == 5
    assert m["item_list_sha256"] == item_list_hash(items)
    assert m["subsampling"]["seed"] == 3 and m["subsampling"]["limit"] == 5
    assert m["loudness"]["target_lufs"] == -16.0 and m["channel_policy"] == "mono"
    assert m["domains"] == {"speech": 5}
    other = protocol_manifest("libritts", "test-other", subsample(_items(30), 5, seed=4), limit=5, seed=4)
    assert other["item_list_sha256"] != m["item_list_sha256"]
    assert protocol_manifest("x", "y", [])["loudness"]["target_lufs"] is None
