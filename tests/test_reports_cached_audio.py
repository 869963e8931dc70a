"""Listening examples come from the run's store and cache alone: the dataset may be gone, a damaged entry is named.

A real (small) run codes two tones with opus; the report is then made after the dataset folder is
deleted, after a cached reference is damaged, and in a fresh interpreter to check which modules it needs.
"""

import ast
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.cache import ReconCache, reference_key
from bench.reports.make import make_report

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TONES_HZ = (220.0, 330.0)


def _tone(f0: float) -> np.ndarray:
    t = np.arange(SR) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def _run(tmp_path: Path, loudness_lufs: float | None = None) -> tuple[Path, Path, Path]:
    """(run dir, clips folder, cache folder) of a two-item opus run over a folder dataset."""
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    clips = tmp_path / "clips"
    clips.mkdir()
    for k, f0 in enumerate(TONES_HZ):
        sf.write(clips / f"tone{k}.wav", _tone(f0), SR)
    cache = tmp_path / "cache"
    run = run_benchmark(RunConfig(codecs="opus@6,opus@12", dataset="folder", root=str(clips),
                                  dataset_options={"domain": "music"}, metrics="si_sdr", workers=1,
                                  progress=False, out_dir=str(tmp_path / "run"), cache_dir=str(cache),
                                  loudness_lufs=loudness_lufs))
    return run, clips, cache


def _input_hashes(run: Path, cache: Path) -> dict[str, str]:
    """item id -> input hash, as the cached reconstructions of the run name it."""
    with sqlite3.connect(run / "results.sqlite") as c:
        rows = c.execute("SELECT item_id, cache_key FROM coded").fetchall()
    out = {}
    for item_id, key in rows:
        meta = ReconCache(cache, readonly=True).meta(key)
        assert meta is not None and isinstance(meta.get("input_hash"), str)
        assert out.setdefault(item_id, meta["input_hash"]) == meta["input_hash"]  # one reference per item
    return out


def _listening_tables(page: str) -> dict[str, str]:
    """item id -> its listening table."""
    return dict(re.findall(r'<h3>([^<]*?) <span class="note">[^<]*</span></h3>(<table class="listen">.*?</table>)', page))


def test_report_after_the_dataset_is_deleted_still_plays_references_and_reconstructions(tmp_path):
    run, clips, cache = _run(tmp_path, loudness_lufs=-20.0)
    shutil.rmtree(clips)  # the dataset is gone: only the store and the cache remain
    written = make_report(run, formats=["html"], n_boot=100)
    page = written["html"].read_text()
    tables = _listening_tables(page)
    assert tables and "not available" not in page and "Audio not available" not in page
    assert page.count("<audio ") == 2 * len(tables)  # the reference and the codec at the comparable rate
    # the reference played is the prepared one the codecs were given (loudness-normalised), not the file
    from bench.audio import loudness_lufs

    for ref_clip in (written["html"].parent / "audio").glob("*reference.wav"):
        x, rate = sf.read(str(ref_clip), always_2d=True)
        assert rate == SR
        assert abs(loudness_lufs(x.T.astype(np.float32), rate) - (-20.0)) < 0.5
        assert not (0.29 < np.max(np.abs(x)) < 0.31)  # the raw tone's peak is 0.3; normalised it is not
    # each reference entry is the cached prepared item: FLAC + JSON, digests recorded
    for input_hash in _input_hashes(run, cache).values():
        paths = ReconCache(cache, readonly=True).paths(reference_key(input_hash))
        assert paths["flac"].is_file() and paths["json"].is_file() and not paths["bin"].exists()
        meta = json.loads(paths["json"].read_text())
        assert meta["kind"] == "reference" and meta["input_hash"] == input_hash and len(meta["flac_sha256"]) == 64


def test_damaged_cached_reference_gives_no_audio_for_that_example_and_says_why(tmp_path):
    run, _, cache = _run(tmp_path)
    hashes = _input_hashes(run, cache)
    victim_item = sorted(hashes)[0]
    flac = ReconCache(cache, readonly=True).paths(reference_key(hashes[victim_item]))["flac"]
    damaged = flac.read_bytes()[:-200]
    flac.write_bytes(damaged)
    page = make_report(run, tmp_path / "rep", formats=["html"], n_boot=100)["html"].read_text()
    tables = _listening_tables(page)
    assert sorted(tables) == sorted(hashes)
    for item_id, table in tables.items():  # reference: "not available" exactly where it was damaged; codecs play
        assert table.count("<audio ") == (1 if item_id == victim_item else 2)
        assert table.count("not available") == (1 if item_id == victim_item else 0)
    assert "Audio not available for 1 version(s)" in page
    assert f"{victim_item} reference: cached reference is damaged" in page and "audio digest mismatch" in page
    assert flac.read_bytes() == damaged  # a report never removes or rewrites cache entries


def test_missing_cache_gives_reasons_not_other_files(tmp_path):
    run, _, cache = _run(tmp_path)
    shutil.rmtree(cache)
    page = make_report(run, tmp_path / "rep", formats=["html"], n_boot=100)["html"].read_text()
    assert "<audio " not in page
    assert "reference not in the cache" in page and "no reconstruction found" in page


def test_cache_written_before_references_is_linked_on_the_next_run(tmp_path):
    """Entries without ``input_hash`` (an older cache) get it on a hit; the reference is stored then."""
    run, clips, cache = _run(tmp_path)
    rc = ReconCache(cache)
    hashes = _input_hashes(run, cache)
    bins = {}
    for key in (path.stem for path in cache.rglob("*.bin")):
        meta = json.loads(rc.paths(key)["json"].read_text())
        del meta["input_hash"]  # as the previous version wrote it ...
        rc.paths(key)["json"].write_text(json.dumps(meta))
        rc.annotate(key, {})  # ... with its digest renewed: a sound entry of an older cache
        assert rc.get(key) is not None and "input_hash" not in rc.get(key)[3]
        bins[key] = rc.paths(key)["bin"].stat().st_mtime_ns
    assert len(bins) == 4
    for h in hashes.values():
        rc.remove(reference_key(h))
    assert "reference not in the cache" in make_report(run, tmp_path / "r1", formats=["html"], n_boot=50)["html"].read_text()
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    run_benchmark(RunConfig(codecs="opus@6,opus@12", dataset="folder", root=str(clips),
                            dataset_options={"domain": "music"}, metrics="si_sdr", workers=1,
                            progress=False, out_dir=str(tmp_path / "run2"), cache_dir=str(cache)))
    assert {k: rc.paths(k)["bin"].stat().st_mtime_ns for k in bins} == bins  # hits: nothing re-encoded
    page = make_report(run, tmp_path / "r2", formats=["html"], n_boot=50)["html"].read_text()
    assert "not available" not in page and page.count("<audio ") == 2 * len(_listening_tables(page))


def test_reference_entries_round_trip_and_refuse_damage(tmp_path):
    cache = ReconCache(tmp_path / "cache")
    x = (0.5 * np.sin(np.arange(4000) / 5.0)).astype(np.float32)[None].repeat(2, 0)
    x[1] *= 2.5  # above full scale: stored with a gain
    key = cache.put_reference("h" * 64, x, 24000)
    assert key == reference_key("h" * 64) and key != "h" * 64
    got = cache.get_reference("h" * 64)
    assert got is not None and got[1] == 24000 and got[0].shape == x.shape
    assert np.max(np.abs(got[0] - x)) < 1e-5
    assert cache.get(key) is None  # not a reconstruction (no bitstream)
    assert cache.ensure_reference("h" * 64, x, 24000) == key
    reader = ReconCache(tmp_path / "cache", readonly=True)
    meta_path = cache.paths(key)["json"]
    meta = json.loads(meta_path.read_text())
    meta["gain"] = 1.0
    meta_path.write_text(json.dumps(meta))
    assert reader.get_reference("h" * 64) is None and "metadata digest mismatch" in reader.problems[0]
    assert meta_path.exists()  # the reader removes nothing
    fresh = ReconCache(tmp_path / "cache")
    fresh.ensure_reference("h" * 64, x, 24000)  # the writer replaces the damaged entry
    assert fresh.get_reference("h" * 64) is not None


def test_reports_import_neither_the_pipeline_nor_the_datasets(tmp_path):
    for path in sorted((ROOT / "bench" / "reports").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("bench.pipeline", "bench.datasets")), f"{path.name} imports {name}"
    run, clips, _ = _run(tmp_path)
    shutil.rmtree(clips)
    code = ("import sys\nfrom bench.reports.make import make_report\n"
            f"make_report({str(run)!r}, {str(tmp_path / 'rep')!r}, n_boot=50)\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('bench.pipeline', 'bench.datasets')))\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "rep" / "index.html").read_text().count("<audio ") == 4


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
