"""AudioSet: local clips + official segment CSVs, the Hugging Face path on local data (no hub), `bench run`."""

from __future__ import annotations

import pytest

from bench.datasets.base import DataMissingError
from bench.registry import DATASETS
from datasets_helpers import general_clips, manifest, need_shared, run_bench, write_wav

# (YouTube id, labels): ids are 11 characters; one is labelled Speech, one Music
CLIPS = [("--PJHxphWEs", ["/m/09x0r", "/t/dd00088"]), ("-0RWZT-miFs", ["/m/04rlf"]),
         ("Y0jSRNP2iZ8", ["/m/0jbk", "/m/09x0r", "/m/04rlf"])]
NAMES = {"/m/09x0r": "Speech", "/m/04rlf": "Music", "/m/0jbk": "Animal", "/t/dd00088": "Gush"}
HEADER = ("# Segments csv created Sun Mar  5 10:54:25 2017\n"
          "# num_ytids=4, num_segs=4, num_unique_labels=4, num_positive_labels=7\n"
          "# YTID, start_seconds, end_seconds, positive_labels\n")


def _clip_audio(i):
    from bench.audio import load_audio

    a = load_audio(general_clips(3)[i])
    return a.samples, a.sample_rate_hz


def build_tree(root, split="eval"):
    """<root>/audioset/{eval_segments.csv, class_labels_indices.csv, eval_segments/<clip>.wav}."""
    need_shared()
    d = root / "audioset"
    d.mkdir(parents=True, exist_ok=True)
    rows = [f'{y}, {30.0 + i:.3f}, {35.0 + i:.3f}, "{",".join(labels)}"' for i, (y, labels) in enumerate(CLIPS)]
    rows.append('zzzzzzzzzzz, 0.000, 10.000, "/m/04rlf"')  # a video that is gone: no clip
    (d / f"{split}_segments.csv").write_text(HEADER + "\n".join(rows) + "\n")
    (d / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f'{i},{m},"{n}"\n' for i, (m, n) in enumerate(NAMES.items())))
    names = [f"{CLIPS[0][0]}.wav", f"Y{CLIPS[1][0]}.wav", f"{CLIPS[2][0]}_32.000_37.000.wav"]  # three naming habits
    for i, name in enumerate(names):
        x, sr = _clip_audio(i)
        write_wav(d / f"{split}_segments" / name, x, sr)
    write_wav(d / f"{split}_segments" / "not_in_the_csv.wav", _clip_audio(0)[0], 44100)
    return d


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("as-root"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def test_local_clips_matched_to_csv(tree):
    items = list(DATASETS.get("audioset").items("eval", tree.parent))
    assert sorted(it.id for it in items) == sorted(y for y, _ in CLIPS)
    by_id = {it.id: it for it in items}
    assert by_id["--PJHxphWEs"].extra["label_names"] == ["Speech", "Gush"]
    assert by_id["--PJHxphWEs"].extra["segment_s"] == [30.0, 35.0]
    assert all(it.domain == "general" and it.duration_s is None for it in items)  # <= 10 s: whole clip
    labelled = {it.id: it.domain for it in DATASETS.get("audioset").configure(domain="by-label").items("eval", tree)}
    assert labelled == {"--PJHxphWEs": "speech", "-0RWZT-miFs": "music", "Y0jSRNP2iZ8": "general"}
    assert DATASETS.get("audioset").missing_rows("eval", tree.parent) == (4, 3)


def test_verify_reports_missing_segments(tree, capsys):
    from bench.cli import main

    assert main(["data", "verify", "audioset", "--root", str(tree.parent)]) == 0
    out = capsys.readouterr().out
    assert "3 of 4 CSV segments have a clip (1 missing" in out


def test_missing_csv_or_clips(tmp_path):
    with pytest.raises(DataMissingError, match="bench data download audioset --split eval"):
        list(DATASETS.get("audioset").items("eval", tmp_path))
    (tmp_path / "audioset").mkdir()
    (tmp_path / "audioset" / "balanced_train_segments.csv").write_text(HEADER)
    with pytest.raises(DataMissingError, match="no balanced_train_segments/ folder"):
        list(DATASETS.get("audioset").items("balanced_train", tmp_path))
    bad = tmp_path / "audioset" / "eval_segments.csv"
    bad.write_text("abc, notatime, 10.0, \"/m/x\"\n")
    (tmp_path / "audioset" / "eval_segments").mkdir()
    with pytest.raises(ValueError, match="bad times"):
        list(DATASETS.get("audioset").items("eval", tmp_path))


def _hf_dataset(clips_dir):
    """An AudioSet-shaped HF dataset (agkphysics/AudioSet columns), audio as encoded bytes."""
    import datasets

    rows = {"video_id": [], "audio": [], "labels": [], "human_labels": []}
    for (ytid, labels), path in zip(CLIPS, sorted(clips_dir.glob("*.wav"))):
        rows["video_id"].append(ytid)
        rows["audio"].append({"bytes": path.read_bytes(), "path": f"{ytid}.wav"})
        rows["labels"].append(labels)
        rows["human_labels"].append([NAMES[m] for m in labels])
    return datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))


def test_hf_path_save_to_disk_and_parquet(tree, tmp_path):
    import soundfile as sf

    pytest.importorskip("datasets")
    ds_hf = _hf_dataset(tree / "eval_segments")
    ds_hf.save_to_disk(str(tmp_path / "saved"))
    ds_hf.to_parquet(str(tmp_path / "pq" / "test-00000-of-00001.parquet"))
    audioset = DATASETS.get("audioset")
    for source in (tmp_path / "saved", tmp_path / "pq"):
        items = list(audioset.configure(source="hf", hf=str(source)).items("eval"))
        assert [it.id for it in items] == [y for y, _ in CLIPS]
        assert items[0].extra["label_names"] == ["Speech", "Gush"]
        assert all(sf.info(it.path).frames > 0 for it in items)  # bytes written out as real audio files
    with pytest.raises(DataMissingError, match="neither a saved dataset"):
        list(audioset.configure(source="hf", hf=str(tmp_path / "nope")).items("eval"))


def test_download_exports_hf_copy_into_local_layout(tree, tmp_path, monkeypatch):
    """`bench data download audioset`: CSVs over HTTP (a local server), clips from a local HF dataset."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import bench.datasets.audioset as aset
    from bench.cli import main

    pytest.importorskip("datasets")
    _hf_dataset(tree / "eval_segments").save_to_disk(str(tmp_path / "saved"))
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tree))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setattr(aset, "CSV_BASE", f"http://127.0.0.1:{httpd.server_address[1]}")
        root = tmp_path / "data"
        assert main(["data", "download", "audioset", "--split", "eval", "--root", str(root), "--no-progress",
                     "--dataset-opt", f"hf={tmp_path / 'saved'}"]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (root / "audioset" / "eval_segments.csv").read_text() == (tree / "eval_segments.csv").read_text()
    items = list(DATASETS.get("audioset").items("eval", root))
    assert sorted(it.id for it in items) == sorted(y for y, _ in CLIPS)


def test_bench_run_audioset_end_to_end(tree, tmp_path, monkeypatch):
    rows = run_bench(tmp_path, monkeypatch, "--dataset", "audioset", "--root", str(tree.parent), "--limit", "2")
    assert len(rows) == 2 and all(r["item"]["dataset"] == "audioset" for r in rows)
    m = manifest(tmp_path)["dataset"]
    assert m["split"] == "eval" and m["n_items"] == 2 and m["subsampling"]["seed"] == 0
