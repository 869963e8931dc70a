"""``bench run --config sweep.toml``: the file reproduces its command line, the command line overrides it,
several datasets are several runs, every mistake is one line naming the file and the key (exit 2),
and each run's manifest records the file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.cli import build_parser
from bench.cli import main as bench_main
from bench.cli import run as cli_run
from bench.sweep import load_sweep
from bench.types import RunConfig

DEMO = ["--dataset", "demo", "--limit", "2", "--codecs", "opus@6,opus@12", "--metrics", "si_sdr,mel_distance"]
DEMO_TOML = """\
[run]
metrics = ["si_sdr", "mel_distance"]
limit = 2

[[codecs]]
name = "opus"
points = ["6", "12"]

[[datasets]]
name = "demo"
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _configs(argv: list[str]) -> list[RunConfig]:
    """The run configurations ``bench run ARGV`` would run (file read, command line over it), without running."""
    args = build_parser().parse_args(["run", *argv])
    sweep = load_sweep(args.config, cli_run.sweep_settings()) if args.config else None
    return [cli_run.config_from_args(ns) for ns in cli_run.run_options(args, sweep)]


def _rows(run_dir: Path) -> list[tuple]:
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return sorted(con.execute("SELECT item_id, codec, op, metric, nominal_kbps, measured_kbps, value, status, "
                                  "error FROM results").fetchall())
    finally:
        con.close()


# --- the file and its command line ----------------------------------------------------------------

def test_the_file_gives_the_same_configuration_as_its_command_line(tmp_path):
    (cfg,) = _configs(["--config", _write(tmp_path, DEMO_TOML)])
    (same,) = _configs(DEMO)
    assert cfg == same
    assert cfg.codecs == "opus@6,opus@12" and cfg.metrics == "si_sdr,mel_distance" and cfg.limit == 2


def test_every_run_setting_of_the_file_reaches_the_configuration(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nb\n")
    text = f"""\
codecs = ["pcm16", "opus@6"]
[run]
dataset = "folder"
split = "all"
root = "{tmp_path}"
dataset_opt = {{ domain = "music", excerpt_s = 2.5 }}
metrics = "si_sdr"
limit = 3
seed = 7
items = "{ids}"
out = "{tmp_path / 'out'}"
cache_dir = "{tmp_path / 'cache'}"
refresh = true
workers = 2
device = "cpu"
engine = "local"
channels = "first"
loudness = -23
align = "none"
no_progress = true
"""
    (cfg,) = _configs(["--config", _write(tmp_path, text)])
    assert cfg == RunConfig(codecs="pcm16,opus@6", dataset="folder", split="all", root=str(tmp_path),
                            dataset_options={"domain": "music", "excerpt_s": "2.5"}, metrics="si_sdr", limit=3,
                            seed=7, item_ids=["a", "b"], out_dir=str(tmp_path / "out"),
                            cache_dir=str(tmp_path / "cache"), refresh=True, workers=2, device="cpu",
                            engine="local", channel_policy="first", loudness_lufs=-23.0, align="none", progress=False)
    (off,) = _configs(["--config", _write(tmp_path, '[run]\nloudness = "none"\n', "off.toml")])
    assert off.loudness_lufs is None


def test_the_command_line_overrides_the_file(tmp_path):
    text = DEMO_TOML.replace("limit = 2", "limit = 5\nseed = 3\nchannels = \"first\"") + \
        'options = { domain = "speech", excerpt_s = "4" }\n'
    path = _write(tmp_path, text)
    (cfg,) = _configs(["--config", path])
    assert (cfg.limit, cfg.seed, cfg.channel_policy) == (5, 3, "first")
    # given values win, even one equal to the option's default (--seed 0)
    (cfg,) = _configs(["--config", path, "--limit", "2", "--seed", "0", "--codecs", "pcm16",
                       "--dataset-opt", "domain=music"])
    assert (cfg.limit, cfg.seed, cfg.codecs, cfg.channel_policy) == (2, 0, "pcm16", "first")
    assert cfg.dataset_options == {"domain": "music", "excerpt_s": "4"}  # merged key by key
    # a dataset named on the command line replaces the file's datasets (and their options)
    two = _write(tmp_path, DEMO_TOML + '[[datasets]]\nname = "folder"\nroot = "x"\n', "two.toml")
    assert len(_configs(["--config", two])) == 2
    (cfg,) = _configs(["--config", two, "--dataset", "folder", "--root", str(tmp_path)])
    assert (cfg.dataset, cfg.root, cfg.dataset_options, cfg.limit) == ("folder", str(tmp_path), {}, 2)


def test_dataset_entries_and_split_lists_are_runs(tmp_path):
    text = """\
codecs = "pcm16"
[run]
limit = 4
root = "/data"
[[datasets]]
name = "libritts"
split = ["test-clean", "test-other"]
limit = 2
[[datasets]]
name = "folder"
options = { domain = "speech" }
items = "%s"
""" % _write(tmp_path, "x\n", "ids.txt")
    cfgs = _configs(["--config", _write(tmp_path, text)])
    assert [(c.dataset, c.split, c.limit, c.root) for c in cfgs] == [
        ("libritts", "test-clean", 2, "/data"), ("libritts", "test-other", 2, "/data"), ("folder", None, 4, "/data")]
    assert cfgs[2].dataset_options == {"domain": "speech"} and cfgs[2].item_ids == ["x"]
    assert all(c.codecs == "pcm16" for c in cfgs)


def test_codec_tables_become_the_codecs_text(tmp_path):
    text = """\
[[codecs]]
name = "opus"
points = ["6", "1*"]
[[codecs]]
name = "dac"
checkpoint = "runs/my/dac.safetensors"
points = "*"
[[codecs]]
name = "mp3"
"""
    (cfg,) = _configs(["--config", _write(tmp_path, text)])
    assert cfg.codecs == "opus@6,opus@1*,dac:runs/my/dac.safetensors@*,mp3"


# --- mistakes: one line naming the file and the key, exit 2, before any work ----------------------

ERRORS = [
    ("[run]\nlimt = 5\n", "[run]: unknown key 'limt'", True),
    ("[run]\nlimit = \"50\"\n", "[run] limit: expected an integer", True),
    ("[run]\nlimit = 0\n", "[run] limit: must be >= 1", True),
    ("[run]\nlimit = true\n", "[run] limit: expected an integer", True),
    ("[run]\nseed = -1\n", "[run] seed: must be >= 0", True),
    ("[run]\nworkers = 1.5\n", "[run] workers: expected an integer", True),
    ("[run]\nloudness = 5\n", "[run] loudness: must be <= 0", True),
    ("[run]\nloudness = nan\n", "[run] loudness", True),
    ("[run]\nloudness = \"loud\"\n", "[run] loudness", True),
    ("[run]\nchannels = \"stereo\"\n", "[run] channels: invalid choice", True),
    ("[run]\nengine = \"spark\"\n", "[run] engine: invalid choice", True),
    ("[run]\nalign = true\n", "[run] align: expected a string", True),
    ("[run]\nrefresh = \"yes\"\n", "[run] refresh: expected true or false", True),
    ("[run]\nmetrics = 3\n", "[run] metrics: expected a string or a list", True),
    ("[run]\nmetrics = []\n", "[run] metrics: expected a list of non-empty strings", True),
    ("[run]\ndevice = \"gpu0\"\n", "[run] device: not a torch device", True),
    ("[run]\naddress = \"not an address\"\n", "[run] address: not a Ray address", True),
    ("[run]\nitems = \"{tmp}/missing.txt\"\n", "[run] items: no such file", True),
    ("[run]\nout = \"{tmp}/a_file\"\n", "[run] out:", True),
    ("[run]\ndataset_opt = \"domain=speech\"\n", "[run] dataset_opt: expected a table", True),
    ("[run]\nconfig = \"other.toml\"\n", "unknown key 'config'", True),
    ("run = 3\n", "expected a table", True),
    ("nonsense = 1\n", "top level: unknown key 'nonsense'", True),
    ("[run\nlimit = 1\n", "not valid TOML", True),
    ("[[codecs]]\npoints = [\"6\"]\n", "[[codecs]] #1 name: expected a codec name", True),
    ("[[codecs]]\nname = \"opus\"\nbitrate = 6\n", "[[codecs]] #1: unknown key 'bitrate'", True),
    ("[[codecs]]\nname = \"opus\"\npoints = []\n", "[[codecs]] #1 points", True),
    ("[[codecs]]\nname = \"opus\"\npoints = [\"6,12\"]\n", "[[codecs]] #1 points", True),
    ("[[codecs]]\nname = \"opus@6\"\n", "[[codecs]] #1 name", True),
    ("[[codecs]]\nname = \"dac\"\ncheckpoint = 4\n", "[[codecs]] #1 checkpoint", True),
    ("codecs = 6\n", "codecs: expected a string or a list", True),
    ("codecs = \"opus\"\n[run]\ncodecs = \"pcm16\"\n", "both at the top and in [run]", True),
    ("[run]\ndataset = \"demo\"\n[[datasets]]\nname = \"demo\"\n", "[run] dataset: the dataset is chosen", True),
    ("[[datasets]]\nname = \"demo\"\nsplt = \"test\"\n", "[[datasets]] #1: unknown key 'splt'", True),
    ("[[datasets]]\nname = \"demo\"\nsplit = []\n", "[[datasets]] #1 split", True),
    ("[[datasets]]\nname = \"demo\"\nsplit = [3]\n", "[[datasets]] #1 split: expected a string", True),
    ("[[datasets]]\nname = \"demo\"\nlimit = 0\n", "[[datasets]] #1 limit: must be >= 1", True),
    ("[[datasets]]\nname = \"demo\"\noptions = { domain = [\"a\"] }\n", "[[datasets]] #1 options", True),
    ("datasets = \"demo\"\n", "datasets: expected one or more [[datasets]] tables", True),
    ("datasets = []\n", "datasets: expected one or more", True),
    # resolved by the library, after the file is read: the library's own one-line messages
    ("[[datasets]]\nname = \"demo\"\n[[datasets]]\nname = \"demo\"\n", "would share the run directory", False),
    ("[[datasets]]\nname = \"demoo\"\n", "did you mean 'demo'", False),
    ("[[datasets]]\nname = \"demo\"\n[[datasets]]\nname = \"demo\"\nsplit = \"nope\"\n", "split", False),
    ("codecs = \"opsu\"\n", "did you mean 'opus'", False),
]


@pytest.mark.parametrize("text, needle, names_file", ERRORS, ids=[e[1] for e in ERRORS])
def test_a_mistake_in_the_file_is_one_line_and_exit_2(text, needle, names_file, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    path = _write(tmp_path, text.replace("{tmp}", str(tmp_path)))
    code = bench_main(["run", "--config", path, "--out", str(tmp_path / "run"), "--no-progress"])
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("error: ") and needle.lower() in lines[0].lower(), lines[0]
    if names_file:
        assert f"{path}: " in lines[0]
    assert not (tmp_path / "run").exists()  # refused before any work


def test_a_missing_sweep_file_is_an_option_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["run", "--config", str(tmp_path / "nope.toml")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--config" in err and "no such file" in err


# --- real runs ------------------------------------------------------------------------------------

def test_the_sweep_file_reproduces_the_command_line_run(tmp_path, capsys):
    common = ["--workers", "1", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    assert bench_main(["run", *DEMO, *common, "--out", str(tmp_path / "cli")]) == 0
    cli_err = capsys.readouterr().err
    path = _write(tmp_path, DEMO_TOML)
    assert bench_main(["run", "--config", path, *common, "--out", str(tmp_path / "file")]) == 0
    file_err = capsys.readouterr().err
    plan = "plan: 2 items x 2 codec points (opus@6,12) x 2 metrics (si_sdr,mel_distance) = 4 pairs, 8 values"
    assert plan in cli_err and plan in file_err
    rows = _rows(tmp_path / "cli")
    assert len(rows) == 8 and all(r[7] == "ok" for r in rows)
    assert _rows(tmp_path / "file") == rows
    cli_manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    manifest = json.loads((tmp_path / "file" / "manifest.json").read_text())
    assert "sweep" not in cli_manifest
    assert {k: v for k, v in manifest["settings"].items() if k != "out_dir"} == \
        {k: v for k, v in cli_manifest["settings"].items() if k != "out_dir"}
    text = Path(path).read_text()
    assert manifest["sweep"] == {"path": path, "sha256": hashlib.sha256(text.encode()).hexdigest(), "text": text,
                                 "command_line_overrides": []}
    con = sqlite3.connect(tmp_path / "file" / "results.sqlite")
    stored = json.loads(con.execute("SELECT manifest FROM runs").fetchone()[0])
    con.close()
    assert stored["sweep"]["text"] == text
    # resumed with an override: the plan counts what is done, the manifest names the override
    assert bench_main(["run", "--config", path, *common, "--out", str(tmp_path / "file"), "--limit", "3"]) == 0
    err = capsys.readouterr().err
    assert "plan: 3 items x 2 codec points" in err and "8 of 12 already done (resume)" in err
    manifest = json.loads((tmp_path / "file" / "manifest.json").read_text())
    assert manifest["sweep"]["command_line_overrides"] == ["--limit"]
    assert len(_rows(tmp_path / "file")) == 12


def test_several_datasets_run_one_after_the_other_each_in_its_run_dir(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(str(audio / f"tone{i}.wav"), (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    text = f"""\
codecs = "pcm16"
[run]
metrics = "si_sdr"
limit = 1
workers = 1
no_progress = true
cache_dir = "{tmp_path / 'cache'}"
[[datasets]]
name = "demo"
[[datasets]]
name = "folder"
root = "{audio}"
options = {{ domain = "music" }}
"""
    path = _write(tmp_path, text)
    out = tmp_path / "sweep"
    assert bench_main(["run", "--config", path, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"sweep {path}: 2 runs" in captured.err
    assert f"demo/test -> {out / 'demo-test'}" in captured.err and f"folder/all -> {out / 'folder-all'}" in captured.err
    assert captured.err.count("plan: 1 item x 1 codec point (pcm16@16bit) x 1 metric (si_sdr)") == 2
    for name in ("demo-test", "folder-all"):
        rows = _rows(out / name)
        assert len(rows) == 1 and rows[0][7] == "ok"
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["sweep"]["text"] == text and manifest["dataset"]["dataset"] == name.split("-")[0]
        assert f"next: bench report {out / name}" in captured.out
