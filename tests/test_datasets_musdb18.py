"""MUSDB18: .stem.mp4 (5 AAC streams, decoded with PyAV) and MUSDB18-HQ WAV folders, stems, `bench run`.

The trees use real music (Frets on Fire stems from ../shared/audio): the song stem plays the part
of "drums", the guitar stem of "other"; bass and vocals are filtered versions. Only the layout and
the stream plumbing are under test, not the separation.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.audio import load_audio
from bench.datasets.base import DataMissingError
from bench.registry import DATASETS
from datasets_helpers import manifest, music, need_shared, run_bench, write_stem_mp4, write_wav

SR = 44100
TRACKS = {"test": [("armygeddon", "Muldjord - Armygeddon"), ("chaos_god", "Muldjord - Chaos God")],
          "train": [("mutilated_mime", "Muldjord - Mutilated Mime")]}


def _stems(song: str) -> list[np.ndarray]:
    """[mixture, drums, bass, other, vocals], stereo 44.1 kHz, 6 s."""
    from scipy.signal import butter, sosfilt

    drums, other = music(song, seconds=6.0, offset_s=8.0)
    bass = sosfilt(butter(4, 200, "lowpass", fs=SR, output="sos"), drums, axis=1).astype(np.float32)
    vocals = sosfilt(butter(2, [300, 3000], "bandpass", fs=SR, output="sos"), other, axis=1).astype(np.float32)
    mixture = 0.5 * (drums + other)
    return [mixture, drums, bass, other, vocals]


def build_stems_tree(root):
    need_shared()
    for split, tracks in TRACKS.items():
        for song, title in tracks:
            write_stem_mp4(root / "musdb18" / split / f"{title}.stem.mp4", _stems(song))
    return root


def build_hq_tree(root):
    need_shared()
    for split, tracks in TRACKS.items():
        for song, title in tracks:
            for name, x in zip(("mixture", "drums", "bass", "other", "vocals"), _stems(song)):
                write_wav(root / "musdb18hq" / split / title / f"{name}.wav", x, SR)
    return root


@pytest.fixture(scope="module")
def stems_root(tmp_path_factory):
    return build_stems_tree(tmp_path_factory.mktemp("musdb"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def test_stem_mp4_mixture_and_stems(stems_root):
    ds = DATASETS.get("musdb18")
    items = list(ds.items("test", stems_root))
    assert [it.id for it in items] == ["Muldjord - Armygeddon", "Muldjord - Chaos God"]
    assert all(it.domain == "music" and it.track == it.id and it.extra["stream_index"] == 0 for it in items)
    assert all(it.duration_s is None for it in items)  # 6 s tracks: shorter than the 10 s excerpt, used whole
    short = list(ds.configure(excerpt_s="4").items("test", stems_root))
    assert all(it.duration_s == 4.0 and 0 <= it.start_s <= 2.1 for it in short)
    vocals = list(ds.configure(stems="vocals,drums").items("train", stems_root))
    assert [it.id for it in vocals] == ["Muldjord - Mutilated Mime/vocals", "Muldjord - Mutilated Mime/drums"]
    assert [it.extra["stream_index"] for it in vocals] == [4, 1]
    # the streams really are different signals, decoded by PyAV through bench.audio
    mix = load_audio(items[0].path, stream_index=0).samples
    bass = load_audio(items[0].path, stream_index=2).samples
    assert mix.shape[0] == 2 and abs(mix.shape[1] - 6 * SR) < 4096
    assert np.corrcoef(mix[0, :SR * 4], bass[0, :SR * 4])[0, 1] < 0.9
    assert len(list(ds.configure(stems="all").items("test", stems_root))) == 10


def test_hq_layout_preferred_and_format_option(stems_root, tmp_path):
    import shutil

    root = build_hq_tree(stems_root.parent / "both")
    shutil.copytree(stems_root / "musdb18", root / "musdb18")
    ds = DATASETS.get("musdb18")
    hq = list(ds.items("test", root))
    assert hq[0].path.endswith("Muldjord - Armygeddon/mixture.wav") and hq[0].extra["format"] == "MUSDB18-HQ"
    assert "stream_index" not in hq[0].extra
    stems = list(ds.configure(format="stems").items("test", root))
    assert stems[0].path.endswith(".stem.mp4")
    assert [it.id for it in hq] == [it.id for it in stems]  # same ids whichever release
    assert list(ds.items("test", root / "musdb18hq"))  # --root at the release folder
    with pytest.raises(DataMissingError, match="--dataset-opt format=7s"):
        list(ds.configure(format="7s").items("test", root))
    with pytest.raises(ValueError, match="stems="):
        ds.configure(stems="kazoo")


def test_resources_are_the_zenodo_records():
    ds = DATASETS.get("musdb18")
    (_, stems), = ds.resources("test")
    (_, hq), = ds.configure(format="hq").resources("test")
    assert "1117372" in stems.url and stems.md5 == "af06762477334799bfc5abf237648207"
    assert "3338373" in hq.url and len(hq.sha256) == 64
    assert ds.expected_counts == {"train": 100, "test": 50}


def test_bench_run_musdb18_stem_mp4_end_to_end(stems_root, tmp_path, monkeypatch):
    rows = run_bench(tmp_path, monkeypatch, "--dataset", "musdb18", "--root", str(stems_root), "--limit", "1",
                     "--dataset-opt", "stems=vocals", "--dataset-opt", "excerpt_s=4")
    assert len(rows) == 1 and rows[0]["item_id"].endswith("/vocals")
    m = manifest(tmp_path)["dataset"]
    assert m["options"]["stems"] == "vocals" and m["domains"] == {"music": 1}
    assert m["excerpt"]["duration_s"] == 4.0 and abs(rows[0]["item"]["duration_s"] - 4.0) < 0.01
