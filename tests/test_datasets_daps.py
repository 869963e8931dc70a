"""DAPS: the unpacked layout, DAC's F10/M10 test split, versions, clean/produced pairing, excerpts, `bench run`."""

from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.base import DataMissingError
from bench.registry import DATASETS
from datasets_helpers import manifest, need_shared, run_bench, speech, write_wav

SR = 44100


def build_tree(root, speakers=("f1", "f10", "m10", "m2"), scripts=("script1", "script2"), seconds=12.0):
    """<root>/daps/{clean,produced,iphone_balcony1}/<spk>_<script>_<version>.wav at 44.1 kHz, 12 s each."""
    need_shared()
    daps = root / "daps"
    for i, spk in enumerate(speakers):
        for j, script in enumerate(scripts):
            x, _ = speech(2 * i + j, SR, min_seconds=seconds)
            x = x[: int(seconds * SR)]
            write_wav(daps / "clean" / f"{spk}_{script}_clean.wav", x, SR)
            write_wav(daps / "produced" / f"{spk}_{script}_produced.wav", np.tanh(2 * x) / 2, SR)
            noisy = x + 0.01 * np.random.default_rng(i).standard_normal(len(x))
            write_wav(daps / "iphone_balcony1" / f"{spk}_{script}_iphone_balcony1.wav", noisy, SR)
    write_wav(daps / "clean" / "f1_script1_clean_breaths.wav", np.zeros(SR), SR)  # excluded, as DAC does
    (daps / "clean" / "._f1_script1_clean.wav").write_bytes(b"AppleDouble junk from the tarball")
    return daps


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("daps-root"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def test_test_split_is_f10_m10_with_excerpts_and_pairs(tree):
    items = list(DATASETS.get("daps").items("test", tree.parent))
    assert [it.id for it in items] == ["clean/f10_script1", "clean/f10_script2", "clean/m10_script1", "clean/m10_script2"]
    assert {it.speaker for it in items} == {"f10", "m10"}
    for it in items:
        assert it.duration_s == 10.0 and 0.0 <= it.start_s <= 2.0  # 10 s excerpt inside a 12 s file
        assert it.extra["pair"]["produced"].endswith(it.id.split("/")[1] + "_produced.wav")
        assert it.extra["pair"]["clean"] == it.path
    # the same excerpts every time (seeded, cached), and different files get different offsets
    again = list(DATASETS.get("daps").items("test", tree.parent))
    assert [(it.start_s, it.duration_s) for it in again] == [(it.start_s, it.duration_s) for it in items]


def test_splits_versions_and_options(tree):
    ds = DATASETS.get("daps")
    assert {it.speaker for it in ds.items("val", tree.parent)} == {"m2"}
    assert {it.speaker for it in ds.items("train", tree.parent)} == {"f1"}
    assert len(list(ds.items("all", tree)))  == 8  # --root may be the daps folder itself
    dev = list(ds.configure(version="iphone_balcony1", excerpt_s="none").items("test", tree.parent))
    assert dev[0].id == "iphone_balcony1/f10_script1" and dev[0].duration_s is None
    assert dev[0].extra["pair"]["device"] == dev[0].path and dev[0].extra["pair"]["clean"].endswith("f10_script1_clean.wav")
    pairs = ds.pairs("test", tree.parent, device="iphone_balcony1")
    assert len(pairs) == 4 and all(p["clean"] and p["produced"] and p["device"] for p in pairs)
    with pytest.raises(ValueError, match="version"):
        ds.configure(version="ipad_mars1")
    with pytest.raises(DataMissingError, match="bench data download daps"):
        list(ds.configure(version="ipad_office2").items("test", tree.parent))


def test_missing_and_resource():
    with pytest.raises(DataMissingError, match="bench data download daps --root /nonexistent"):
        list(DATASETS.get("daps").items("test", "/nonexistent"))
    (name, res), = DATASETS.get("daps").resources("test")
    assert "zenodo.org/records/4660670" in res.url and len(res.md5) == 32 and res.size_bytes > 10**10


def test_bench_run_daps_end_to_end(tree, tmp_path, monkeypatch):
    rows = run_bench(tmp_path, monkeypatch, "--dataset", "daps", "--root", str(tree.parent), "--limit", "2")
    assert len(rows) == 2 and all(r["item"]["speaker"] in ("f10", "m10") for r in rows)
    assert all(abs(r["item"]["duration_s"] - 10.0) < 0.01 for r in rows)
    m = manifest(tmp_path)["dataset"]
    assert m["excerpt"]["kind"] == "fixed-length excerpt" and m["excerpt"]["duration_s"] == 10.0
    assert m["subsampling"]["limit"] == 2 and m["options"]["version"] == "clean"
