"""LibriTTS / LibriTTS-R: the OpenSLR layout, transcripts, variants, the missing-data error, `bench run`."""

from __future__ import annotations

import pytest

from bench.datasets.base import DataMissingError
from bench.registry import DATASETS
from datasets_helpers import manifest, need_shared, run_bench, speech, write_wav

UTTS = [("1089", "134686", "000001_000001"), ("1089", "134686", "000002_000000"), ("2300", "131720", "000005_000003")]


def build_tree(root, folder="LibriTTS", split="test-other", n=3):
    """<root>/<folder>/<split>/<speaker>/<chapter>/<id>.wav + .normalized.txt + .original.txt, 24 kHz."""
    need_shared()
    ids = []
    for i, (spk, chap, tail) in enumerate(UTTS[:n]):
        utt = f"{spk}_{chap}_{tail}"
        x, text = speech(i, 24000)
        d = root / folder / split / spk / chap
        write_wav(d / f"{utt}.wav", x[: 24000 * 3], 24000)
        (d / f"{utt}.normalized.txt").write_text(text.capitalize() + ".")
        (d / f"{utt}.original.txt").write_text(text.upper())
        ids.append(utt)
    (root / folder / split / "README.txt").write_text("not audio")
    return ids


def test_items_from_openslr_layout(tmp_path):
    ids = build_tree(tmp_path)
    items = list(DATASETS.get("libritts").items("test-other", tmp_path))
    assert [it.id for it in items] == ids
    assert [it.speaker for it in items] == ["1089", "1089", "2300"]
    assert all(it.domain == "speech" and it.duration_s is None and it.start_s == 0 for it in items)
    assert items[0].transcript.endswith(".") and items[0].transcript[0].isupper()  # the normalized text
    assert items[0].extra == {"chapter": "134686", "variant": "LibriTTS"}
    # --root may also point at the LibriTTS folder or at the split folder
    assert [it.id for it in DATASETS.get("libritts").items("test-other", tmp_path / "LibriTTS")] == ids
    assert [it.id for it in DATASETS.get("libritts").items("test-other", tmp_path / "LibriTTS" / "test-other")] == ids


def test_root_from_env_and_config(tmp_path, monkeypatch):
    build_tree(tmp_path / "data", n=1)
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    assert len(list(DATASETS.get("libritts").items("test-other"))) == 1
    monkeypatch.delenv("BENCH_DATA_ROOT")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[data.roots]\nlibritts = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("BENCH_CONFIG", str(cfg))
    assert len(list(DATASETS.get("libritts").items("test-other"))) == 1


def test_libritts_r_variant(tmp_path):
    build_tree(tmp_path, folder="LibriTTS_R", n=2)
    auto = list(DATASETS.get("libritts").items("test-other", tmp_path))
    assert len(auto) == 2 and auto[0].extra["variant"] == "LibriTTS-R"
    with pytest.raises(DataMissingError, match="bench data download libritts --split test-other"):
        list(DATASETS.get("libritts").configure(variant="original").items("test-other", tmp_path))
    build_tree(tmp_path, folder="LibriTTS", n=1)
    assert len(list(DATASETS.get("libritts").items("test-other", tmp_path))) == 1  # LibriTTS wins in auto
    r = DATASETS.get("libritts").configure(variant="r")
    assert len(list(r.items("test-other", tmp_path))) == 2
    assert r.resources("test-other")[0][1].url == "https://www.openslr.org/resources/141/test_other.tar.gz"


def test_missing_data_names_the_command(tmp_path):
    with pytest.raises(DataMissingError) as exc:
        list(DATASETS.get("libritts").items("dev-clean", tmp_path / "nothing"))
    msg = str(exc.value)
    assert f"bench data download libritts --split dev-clean --root {tmp_path / 'nothing'}" in msg
    assert "\n" not in msg
    with pytest.raises(DataMissingError, match="variant=r"):
        list(DATASETS.get("libritts").configure(variant="r").items("dev-clean", tmp_path))


def test_only_libritts_claims_its_splits_and_resources_are_real():
    owners = {name for name, ds in DATASETS.items() if "test-other" in ds.splits or "test-clean" in ds.splits}
    assert owners == {"libritts"}
    lt = DATASETS.get("libritts")
    assert set(lt.splits) == {"train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                              "test-clean", "test-other"}
    for split in lt.splits:
        (name, res), = lt.resources(split)
        assert res.url == f"https://www.openslr.org/resources/60/{split}.tar.gz"
        assert len(res.md5) == 32 and res.provides == f"LibriTTS/{split}"


def test_bench_run_split_alone_means_libritts(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["run", "--codecs", "all", "--split", "test-other", "--no-progress", "--out", str(tmp_path / "r0")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bench data download libritts --split test-other" in err
    ids = build_tree(tmp_path / "data")
    rows = run_bench(tmp_path, monkeypatch, "--split", "test-other", "--root", str(tmp_path / "data"))
    assert sorted(r["item_id"] for r in rows) == sorted(ids)
    assert all(r["item"]["dataset"] == "libritts" and r["item"]["transcript"] for r in rows)
    m = manifest(tmp_path)["dataset"]
    assert m["dataset"] == "libritts" and m["split"] == "test-other" and m["n_items"] == 3
    assert m["excerpt"] == {"kind": "whole files"} and len(m["item_list_sha256"]) == 64
