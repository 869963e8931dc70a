"""``bench export`` writes a real run's reconstructions, bitstreams and references from the cache alone.

One small real run (pcm16 and opus@6 on two demo items) is exported; the files are compared with
the cache entries sample for sample and byte for byte; a damaged and a missing entry are skipped
and counted, never replaced by a wrong file; a folder that is not a run exits 2.
"""

import argparse
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.cache import ReconCache
from bench.export import export_run, safe_names


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run dir, cache dir) of a two-item pcm16 + opus@6 demo run."""
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    tmp = tmp_path_factory.mktemp("export")
    cache = tmp / "cache"
    run_dir = run_benchmark(RunConfig(codecs="pcm16,opus@6", dataset="demo", limit=2, metrics="si_sdr", workers=1,
                                      progress=False, out_dir=str(tmp / "run"), cache_dir=str(cache)))
    return Path(run_dir), cache


def _coded(run_dir: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(run_dir / "results.sqlite") as c:
        return c.execute("SELECT item_id, codec, op, cache_key FROM coded ORDER BY codec, op, item_id").fetchall()


def test_export_matches_the_cache(run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, cache_dir = run
    rows = _coded(run_dir)
    assert len(rows) == 4 and all(r[3] for r in rows)
    summary = export_run(run_dir, tmp_path / "out")
    assert (summary.reconstructions, summary.references, sum(summary.skipped.values())) == (4, 2, 0)
    cache = ReconCache(cache_dir, readonly=True)
    codecs = safe_names(r[1] for r in rows)
    ops = safe_names(r[2] for r in rows)
    items = safe_names(r[0] for r in rows)
    for item_id, codec, op, key in rows:
        audio, sr, bitstream, meta = cache.get(key)
        base = tmp_path / "out" / codecs[codec] / ops[op] / items[item_id]
        wav, wav_sr = sf.read(base.with_suffix(".wav"), dtype="float32", always_2d=True)
        assert wav_sr == sr and np.array_equal(wav.T, audio)
        assert base.with_suffix(".bin").read_bytes() == bitstream and len(bitstream) > 0
        ref, ref_sr = cache.get_reference(meta["input_hash"])
        wav, wav_sr = sf.read(tmp_path / "out" / "reference" / f"{items[item_id]}.wav", dtype="float32",
                              always_2d=True)
        assert wav_sr == ref_sr and np.array_equal(wav.T, ref)
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 6
    assert cache.problems == []


def test_damaged_and_missing_entries_are_skipped_and_counted(run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, cache_dir = run
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    rows = _coded(run_dir)
    cache = ReconCache(copy, readonly=True)
    damaged, missing = rows[0], rows[1]
    flac = cache.audio_path(damaged[3])
    flac.write_bytes(flac.read_bytes()[:-10])
    cache.paths(missing[3])["json"].unlink()
    before = sorted(p.name for p in copy.rglob("*"))
    summary = export_run(run_dir, tmp_path / "out", cache_dir=copy)
    assert summary.reconstructions == 2
    assert summary.skipped["reconstruction(s) damaged in the cache"] == 1
    assert summary.skipped["reconstruction(s) missing from the cache"] == 1
    assert summary.references == 2  # the other codec's entries still name each item's input
    assert sorted(p.name for p in copy.rglob("*")) == before  # read-only: nothing removed
    names = {r[1]: safe_names(x[1] for x in rows)[r[1]] for r in rows}
    for item_id, codec, op, _ in (damaged, missing):
        stem = safe_names(x[0] for x in rows)[item_id]
        folder = tmp_path / "out" / names[codec] / safe_names(x[2] for x in rows)[op]
        assert not (folder / f"{stem}.wav").exists() and not (folder / f"{stem}.bin").exists()
    assert "skipped 2" in summary.line()


def test_cli_prints_a_summary_and_rejects_a_non_run(run: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import export as cli_export

    parser = argparse.ArgumentParser()
    cli_export.add_arguments(parser)
    args = parser.parse_args([str(run[0]), "--audio", str(tmp_path / "out")])
    assert cli_export.main(args) == 0
    assert "exported 4 reconstruction(s)" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    from bench.store import StoreError

    with pytest.raises(StoreError) as exc:
        export_run(empty, tmp_path / "out2")
    assert exc.value.exit_code == 2
    with pytest.raises(StoreError):
        export_run(tmp_path / "nowhere", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_safe_names_are_safe_and_distinct() -> None:
    names = ["dac:/a/b/ckpt.safetensors", "dac:/c/b/ckpt.safetensors", "A", "a", "opus", "reference", "../x", ""]
    out = safe_names(names)
    assert len(set(out.values())) == len(names)
    assert len({v.lower() for v in out.values()}) == len(names)
    assert out["opus"] == "opus"
    for v in out.values():
        assert v and "/" not in v and ":" not in v and not v.startswith(".")
