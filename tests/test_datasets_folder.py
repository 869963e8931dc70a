"""The ``folder`` dataset: any directory of audio, ids from relative paths, sidecar transcripts."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bench.datasets._common import DatasetOptionError
from bench.datasets.base import DataMissingError
from bench.registry import DATASETS


def _tone(path, seconds=1.0, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), sr)


@pytest.fixture
def tree(tmp_path):
    _tone(tmp_path / "b" / "two.wav")
    _tone(tmp_path / "a" / "one.flac")
    (tmp_path / "a" / "one.txt").write_text("hello   world\n")
    _tone(tmp_path / "top.wav")
    _tone(tmp_path / ".hidden" / "x.wav")
    (tmp_path / "notes.md").write_text("not audio")
    return tmp_path


def test_items_ids_order_transcripts(tree):
    ds = DATASETS.get("folder").configure(domain="speech", speaker="parent")
    items = list(ds.items(None, tree))
    assert [it.id for it in items] == ["a/one", "b/two", "top"]
    assert items[0].transcript == "hello world" and items[1].transcript is None
    assert [it.speaker for it in items] == ["a", "b", None]
    assert all(it.domain == "speech" and it.dataset == "folder" for it in items)
    assert items[0].duration_s is None  # whole files by default


def test_domain_from_env_or_subfolders_else_clear_error(tree, tmp_path, monkeypatch):
    ds = DATASETS.get("folder")
    with pytest.raises(DatasetOptionError, match="domain=speech"):
        list(ds.items(None, tree))
    monkeypatch.setenv("BENCH_FOLDER_DOMAIN", "music")
    assert {it.domain for it in ds.items(None, tree)} == {"music"}
    monkeypatch.delenv("BENCH_FOLDER_DOMAIN")
    other = tmp_path / "by-domain"
    _tone(other / "music" / "song.wav")
    _tone(other / "speech" / "talk.wav")
    assert {it.id: it.domain for it in ds.items(None, other)} == {"music/song": "music", "speech/talk": "speech"}


def test_split_is_subfolder_and_excerpts(tree):
    ds = DATASETS.get("folder").configure(domain="general", excerpt_s="0.5")
    items = list(ds.items("a", tree))
    assert [it.id for it in items] == ["one"] and items[0].duration_s == 0.5
    assert 0.0 <= items[0].start_s <= 0.5


def test_bad_options_and_missing(tree, tmp_path):
    ds = DATASETS.get("folder")
    with pytest.raises(DatasetOptionError, match="did you mean|Did you mean"):
        ds.configure(domian="speech")
    with pytest.raises(DatasetOptionError, match="choose one of"):
        ds.configure(domain="noise")
    with pytest.raises(DataMissingError, match="--root"):
        list(ds.items(None, None))
    with pytest.raises(DataMissingError, match="not a directory"):
        list(ds.configure(domain="speech").items(None, tmp_path / "nope"))
    _tone(tmp_path / "dup" / "x.wav")
    _tone(tmp_path / "dup" / "x.flac")
    with pytest.raises(DatasetOptionError, match="share the id"):
        list(ds.configure(domain="speech").items(None, tmp_path / "dup"))
    assert ds.options["domain"] is None  # configure returned a copy


def test_symlink_loops_and_duplicate_links_list_each_file_once(tmp_path):
    """One file plus a link back to an ancestor used to become 41 items (os.walk followlinks)."""
    clips = tmp_path / "clips"
    _tone(clips / "sub" / "one.wav")
    (clips / "sub" / "back").symlink_to(clips)
    (clips / "same.wav").symlink_to(clips / "sub" / "one.wav")
    outside = tmp_path / "elsewhere"
    _tone(outside / "far.wav")
    (clips / "ext1").symlink_to(outside)
    (clips / "ext2").symlink_to(outside)
    items = list(DATASETS.get("folder").configure(domain="speech").items(None, clips))
    assert [it.id for it in items] == ["ext1/far", "sub/one"]


def test_bench_run_folder_end_to_end(tmp_path, monkeypatch):
    """A user's folder of mixed formats (MP3, Ogg, 24-bit FLAC) with a sidecar transcript."""
    import shutil

    from datasets_helpers import need_shared, run_bench

    shared = need_shared() / "fixtures"
    clips = tmp_path / "clips"
    (clips / "talks").mkdir(parents=True)
    shutil.copy(shared / "speech-mp3" / "1320_00000.mp3", clips / "talks" / "a.mp3")
    shutil.copy(shared / "speech-librispeech-ogg" / "198-209-0000.hq.ogg", clips / "talks" / "b.ogg")
    (clips / "talks" / "b.txt").write_text("  the words  spoken\nin b \n")
    shutil.copy(shared / "speech-jfk-stereo-24bit" / "jfk.flac", clips / "jfk.flac")
    rows = run_bench(tmp_path, monkeypatch, "--dataset", "folder", "--root", str(clips), "--dataset-opt", "domain=speech")
    by_id = {r["item_id"]: r["item"] for r in rows}
    assert sorted(by_id) == ["jfk", "talks/a", "talks/b"]
    assert by_id["talks/b"]["transcript"] == "the words spoken in b" and by_id["talks/a"]["transcript"] is None
    assert {i["domain"] for i in by_id.values()} == {"speech"}
