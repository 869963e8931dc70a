"""Training versus evaluation files: overlap by content (SHA-256) and by relative path, copies kept on one
side of the hold-out split, ``--check-overlap`` recorded in the checkpoint card, and the frozen training
config the command line builds."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.train.config import OverlapCheck, TrainConfig
from bench.train.data import scan, split_holdout
from bench.train.overlap import (
    ContentHashes,
    dataset_overlap,
    find_overlap,
    holdout_overlap,
    identical_groups,
    item_entries,
    share_units_of_copies,
    training_entries,
)


def _tone(path: Path, f0: float, sr: int = 16000, seconds: float = 0.5, seed: int = 0) -> Path:
    """A short noisy tone; distinct (f0, seed) give distinct bytes of the same size."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32), sr)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A training folder (speech/, music/) and an evaluation folder sharing one copy and one name."""
    data, evaluation = tmp_path / "data", tmp_path / "eval"
    for i in range(3):
        _tone(data / "speech" / f"utt{i}.wav", 150 + 50 * i, seed=i)
        _tone(data / "music" / f"song{i}.wav", 440 + 110 * i, seed=10 + i)
    (evaluation / "a").mkdir(parents=True)
    shutil.copy(data / "music" / "song1.wav", evaluation / "a" / "renamed.wav")
    _tone(evaluation / "b" / "speech" / "utt2.flac", 999, seed=99)  # same relative path, other content
    _tone(evaluation / "b" / "fresh.wav", 777, seed=77)  # shares nothing
    return data, evaluation


def test_content_and_relative_path_matches_are_reported(folders):
    data, evaluation = folders
    files = scan([str(data)])
    evaluated = sorted(str(p) for p in evaluation.rglob("*.*"))
    matches = find_overlap(training_entries(files), item_entries(evaluated))
    found = {(Path(m["train"]).name, Path(m["evaluation"]).name, tuple(m["by"])) for m in matches}
    assert found == {("song1.wav", "renamed.wav", ("sha256",)), ("utt2.wav", "utt2.flac", ("path",))}
    by_path = next(m for m in matches if m["by"] == ["path"])
    assert by_path["train_rel"] == "speech/utt2" and by_path["evaluation_rel"] == "b/speech/utt2"
    # the same real file on both sides is content overlap too, without reading it twice
    same = find_overlap(training_entries(files[:1]), item_entries([files[0].path]))
    assert [m["by"] for m in same] == [["sha256", "path"]]


def test_identical_groups_narrow_by_size_head_and_full_hash(tmp_path):
    a = _tone(tmp_path / "a.wav", 200, seed=1)
    b = Path(shutil.copy(a, tmp_path / "b.wav"))
    c = _tone(tmp_path / "c.wav", 200, seed=2)  # same size, other bytes
    d = _tone(tmp_path / "d.wav", 200, seconds=0.7)  # other size: never hashed
    hashes = ContentHashes()
    assert identical_groups([str(p) for p in (a, b, c, d)], hashes) == [[str(a), str(b)]]
    assert str(d) not in hashes._head and str(c) not in hashes._full  # cheap tests decided those


def test_copies_share_a_holdout_unit_and_the_split_is_checked(tmp_path):
    data = tmp_path / "data"
    for i in range(40):
        _tone(data / f"clip{i:02d}.wav", 100 + 10 * i, seed=i, seconds=0.2)
    for i in range(40):  # a copy of every clip under another name
        shutil.copy(data / f"clip{i:02d}.wav", data / f"copy{i:02d}.wav")
    hashes = ContentHashes()
    files = share_units_of_copies(scan([str(data)]), hashes)
    train, held = split_holdout(files, fraction=0.1)
    held_names = {Path(f.path).name for f in held}
    assert held_names and all(n.replace("copy", "clip") in held_names for n in held_names)
    assert all(n.replace("clip", "copy") in held_names for n in held_names)
    check = holdout_overlap(train, held, hashes)
    assert check["against"] == "holdout" and check["overlapping_count"] == 0
    # without shared units a copy lands on the other side: the check refuses that split
    plain_train, plain_held = split_holdout(scan([str(data)]), fraction=0.1)
    with pytest.raises(RuntimeError, match="same content on both sides"):
        holdout_overlap(plain_train, plain_held, ContentHashes())


def test_dataset_overlap_against_a_folder_dataset(folders):
    data, evaluation = folders
    files = scan([str(data)])
    check = OverlapCheck("folder", None, str(evaluation), (("domain", "speech"),))
    result = dataset_overlap(files, check, ContentHashes())
    assert result["against"] == "folder:all" and result["items"] == 3 and result["evaluation_files"] == 3
    assert result["overlapping_count"] == 2 and len(result["overlapping"]) == 2


def test_bench_train_records_the_overlap_check_in_the_card(folders, tmp_path):
    from bench.cli import main

    data, evaluation = folders
    out = tmp_path / "out"
    argv = ["train", "dac", "--config", "tiny", "--data", str(data), "--out", str(out), "--steps", "1",
            "--num-threads", "1", "--validate-every", "0", "--val-per-group", "1", "--val-duration-s", "0.5",
            "--check-overlap", "folder:all", "--check-overlap-root", str(evaluation),
            "--check-overlap-opt", "domain=general"]
    assert main(argv) == 0
    card_data = json.loads((out / "dac_tiny.json").read_text())["training"]["data"]
    assert card_data["holdout_check"]["overlapping_count"] == 0
    check = card_data["overlap_check"]
    assert check["against"] == "folder:all" and check["overlapping_count"] >= 1
    assert {m["evaluation"] for m in check["overlapping"]} >= {str(evaluation / "a" / "renamed.wav")}


def test_check_overlap_options_need_the_dataset(tmp_path, capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as exc:  # argparse's one-line error
        main(["train", "dac", "--config", "tiny", "--data", str(tmp_path), "--steps", "1", "--out",
              str(tmp_path / "o"), "--check-overlap-root", str(tmp_path)])
    assert exc.value.code == 2 and "need --check-overlap" in capsys.readouterr().err


def test_the_command_line_builds_a_frozen_config_with_the_dataclass_defaults(tmp_path):
    from bench.cli.train import build_model_parser, load_model_module, train_config
    from bench.train.dac import DACOptions

    module = load_model_module("dac")
    parser = build_model_parser("dac", module)
    args = parser.parse_args(["--config", "tiny", "--data", str(tmp_path), "--steps", "3", "--out", str(tmp_path),
                              "--lr", "2e-4", "--data-licence", "mine"])
    cfg = train_config(args, module.OPTIONS, parser)
    assert cfg.options == DACOptions(lr=2e-4) and cfg.data == (str(tmp_path),) and cfg.data_licences == ("mine",)
    defaults = TrainConfig("tiny", (str(tmp_path),), 3, str(tmp_path), DACOptions(lr=2e-4), data_licences=("mine",))
    assert cfg == defaults and cfg.check_overlap is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 4  # type: ignore[misc]
