"""A user's mistake gets one line and exit code 2, never a traceback: every subcommand, bad values.

Each case calls ``bench.cli.main`` in-process with one bad option value (the rest valid) and
asserts exit code 2, an ``error`` line on stderr naming the problem, and no traceback. The
gate/baseline and score subcommands have their own tables in test_gate_errors.py and
test_score_cli.py; the cases here cover run, report, data, train and ls, and the paths shared
by all of them (a file where a folder belongs, a folder below a regular file, a missing file).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.cli import main as bench_main


@pytest.fixture()
def paths(tmp_path) -> dict[str, str]:
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder\n")
    not_db = tmp_path / "notdb"
    not_db.mkdir()
    (not_db / "results.sqlite").write_text("this is not sqlite")
    empty_db = tmp_path / "emptydb"
    empty_db.mkdir()
    sqlite3.connect(empty_db / "results.sqlite").execute("CREATE TABLE t (x)").connection.close()
    return {"file": str(a_file), "under_file": str(a_file / "sub"), "missing": str(tmp_path / "missing"),
            "not_db": str(not_db), "empty_db": str(empty_db), "tmp": str(tmp_path)}


RUN_OK = ["run", "--codecs", "pcm16", "--dataset", "demo", "--limit", "1", "--metrics", "si_sdr", "--no-progress"]

# (options, what the message must mention)
RUN_CASES = [
    (["--workers", "-3"], "--workers"),
    (["--workers", "0"], "--workers"),
    (["--workers", "two"], "--workers"),
    (["--limit", "0"], "--limit"),
    (["--limit", "-1"], "--limit"),
    (["--limit", "1.5"], "--limit"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "x"], "--seed"),
    (["--loudness", "abc"], "--loudness"),
    (["--loudness", "nan"], "--loudness"),
    (["--loudness", "+20"], "--loudness"),
    (["--loudness", "inf"], "--loudness"),
    (["--dataset-opt", "domain"], "--dataset-opt"),
    (["--dataset-opt", "=speech"], "--dataset-opt"),
    (["--channels", "stereo"], "--channels"),
    (["--align", "yes"], "--align"),
    (["--device", "gpu0"], "--device"),
    (["--device", "cuda:99"], "--device"),
    (["--codecs", "opsu"], "opus"),
    (["--codecs", "opus@13"], "operating point"),
    (["--codecs", ""], "selects nothing"),
    (["--metrics", "si_sdrr"], "si_sdr"),
    (["--dataset", "demoo"], "demo"),
    (["--split", "nope"], "split"),
    (["--dataset-opt", "colour=red"], "option"),
]
PATH_CASES = [
    (["--out", "{file}"], "not a folder"),
    (["--out", "{under_file}"], "cannot create"),
    (["--cache-dir", "{file}"], "not a folder"),
    (["--cache-dir", "{under_file}"], "cannot create"),
    (["--items", "{missing}"], "no such file"),
    (["--items", "{tmp}"], "not a file"),
]


def _call(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = bench_main(argv)
    except SystemExit as exc:  # argparse exits on a bad value
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    return code, err


def _assert_one_line_error(code: int, err: str, needle: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert "error" in lines[0] and needle.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("bad, needle", RUN_CASES, ids=[" ".join(c[0]) or "empty" for c in RUN_CASES])
def test_run_bad_values(bad, needle, tmp_path, capsys):
    code, err = _call(RUN_OK + ["--out", str(tmp_path / "run")] + bad, capsys)
    _assert_one_line_error(code, err, needle)
    assert not (tmp_path / "run" / "results.sqlite").exists()  # refused before any work


@pytest.mark.parametrize("bad, needle", PATH_CASES, ids=[" ".join(c[0]) for c in PATH_CASES])
def test_run_bad_paths(bad, needle, paths, capsys):
    argv = RUN_OK + [a.format(**paths) for a in bad]
    if "--out" not in bad:
        argv += ["--out", str(Path(paths["tmp"]) / "run")]
    code, err = _call(argv, capsys)
    _assert_one_line_error(code, err, needle)


def test_run_cache_env_that_is_a_file(paths, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE_DIR", paths["file"])
    code, err = _call(RUN_OK + ["--out", str(Path(paths["tmp"]) / "run")], capsys)
    _assert_one_line_error(code, err, "BENCH_CACHE_DIR")


def test_items_file_naming_missing_ids(tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("no-such-item\n")
    code, err = _call(RUN_OK + ["--out", str(tmp_path / "run"), "--items", str(ids)], capsys)
    _assert_one_line_error(code, err, "not in")


REPORT_CASES = [
    (["{missing}"], "no such"),
    (["{file}"], "not a bench results database"),
    (["{not_db}"], "not a bench results database"),
    (["{empty_db}"], "not a bench results database"),
    (["{tmp}"], "no results.sqlite"),
]
REPORT_OPTION_CASES = [
    (["--bootstrap", "0"], "--bootstrap"),
    (["--bootstrap", "-5"], "--bootstrap"),
    (["--alpha", "0"], "--alpha"),
    (["--alpha", "1.5"], "--alpha"),
    (["--alpha", "nan"], "--alpha"),
    (["--seed", "-1"], "--seed"),
    (["--listen-kbps", "-6"], "--listen-kbps"),
    (["--excerpt-s", "0"], "--excerpt-s"),
    (["--format", "docx"], "--format"),
    (["--format", ","], "--format"),
    (["--out", "{file}"], "not a folder"),
    (["--out", "{under_file}"], "cannot create"),
]


@pytest.mark.parametrize("bad, needle", REPORT_CASES, ids=[c[0][0] for c in REPORT_CASES])
def test_report_on_what_is_not_a_run(bad, needle, paths, capsys):
    code, err = _call(["report"] + [a.format(**paths) for a in bad], capsys)
    _assert_one_line_error(code, err, needle)


@pytest.fixture(scope="module")
def a_run(tmp_path_factory) -> str:
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    out = tmp_path_factory.mktemp("fuzzrun") / "run"
    run_benchmark(RunConfig(codecs="pcm16", dataset="demo", limit=1, metrics="si_sdr", out_dir=str(out),
                            workers=1, progress=False))
    return str(out)


@pytest.mark.parametrize("bad, needle", REPORT_OPTION_CASES, ids=[" ".join(c[0]) for c in REPORT_OPTION_CASES])
def test_report_bad_values(bad, needle, a_run, paths, capsys):
    code, err = _call(["report", a_run, "--no-audio"] + [a.format(**paths) for a in bad], capsys)
    _assert_one_line_error(code, err, needle)


def test_report_unknown_reference(a_run, capsys):
    code, err = _call(["report", a_run, "--reference", "opsu", "--no-audio"], capsys)
    _assert_one_line_error(code, err, "--reference")


def test_report_unknown_run_id(a_run, capsys):
    code, err = _call(["report", a_run, "--run-id", "nope", "--no-audio"], capsys)
    _assert_one_line_error(code, err, "no run")


DATA_CASES = [
    (["verify"], "needs a dataset name"),
    (["download", "librittss"], "libritts"),
    (["verify", "libritts", "--split", "test-others"], "split"),
    (["download", "libritts", "--dataset-opt", "variant"], "--dataset-opt"),
    (["download", "libritts", "--mirror", "ftp://x"], "--mirror"),
    (["download", "libritts", "--mirror", "not a url"], "--mirror"),
    (["frobnicate"], "action"),
]


@pytest.mark.parametrize("argv, needle", DATA_CASES, ids=[" ".join(c[0]) for c in DATA_CASES])
def test_data_bad_values(argv, needle, capsys):
    code, err = _call(["data"] + argv, capsys)
    _assert_one_line_error(code, err, needle)


TRAIN_OK = ["train", "dac", "--config", "tiny", "--data", "{tmp}", "--steps", "1", "--out", "{tmp}/t"]
TRAIN_CASES = [
    (["--steps", "0"], "--steps"),
    (["--steps", "-4"], "--steps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--num-threads", "-1"], "--num-threads"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--validate-every", "-1"], "--validate-every"),
    (["--log-every", "0"], "--log-every"),
    (["--holdout-fraction", "2"], "--holdout-fraction"),
    (["--holdout-fraction", "nan"], "--holdout-fraction"),
    (["--val-duration-s", "0"], "--val-duration-s"),
    (["--lr", "-1e-3"], "--lr"),
    (["--quantizer-dropout", "1.5"], "--quantizer-dropout"),
    (["--device", "tpu"], "--device"),
    (["--out", "{file}"], "not a folder"),
]


@pytest.mark.parametrize("bad, needle", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_bad_values(bad, needle, paths, capsys):
    argv = [a.format(**paths) for a in TRAIN_OK]
    if bad[0] in argv:  # replace the valid value
        i = argv.index(bad[0])
        argv[i:i + 2] = [a.format(**paths) for a in bad]
    else:
        argv += [a.format(**paths) for a in bad]
    code, err = _call(argv, capsys)
    _assert_one_line_error(code, err, needle)


def test_train_unknown_model(capsys):
    code, err = _call(["train", "dacc", "--config", "tiny"], capsys)
    _assert_one_line_error(code, err, "dac")


def test_ls_unknown_registry(capsys):
    code, err = _call(["ls", "codec"], capsys)
    _assert_one_line_error(code, err, "codecs")


def test_unknown_subcommand(capsys):
    code, err = _call(["runn"], capsys)
    _assert_one_line_error(code, err, "run")


def test_run_with_a_missing_checkpoint(tmp_path, capsys):
    code, err = _call(["run", "--codecs", f"dac:{tmp_path / 'nope.safetensors'}", "--dataset", "demo", "--limit", "1",
                       "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    _assert_one_line_error(code, err, "no such checkpoint")


def test_run_with_a_checkpoint_without_card(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    code, err = _call(["run", "--codecs", f"dac:{bad}", "--dataset", "demo", "--limit", "1",
                       "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    _assert_one_line_error(code, err, "card")


@pytest.mark.parametrize("case", ["no_audio", "missing_folder", "resume_without_state"])
def test_train_data_and_resume_mistakes(case, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    argv = ["train", "dac", "--config", "tiny", "--data", str(data if case != "missing_folder" else tmp_path / "x"),
            "--steps", "1", "--out", str(tmp_path / "out")]
    if case == "resume_without_state":
        import numpy as np
        import soundfile as sf

        for i in range(4):
            sf.write(str(data / f"a{i}.wav"), np.zeros(24000, np.float32) + 0.01 * i, 24000)
        argv.append("--resume")
    code, err = _call(argv, capsys)
    needle = {"no_audio": "no audio files", "missing_folder": "not found", "resume_without_state": "--resume"}[case]
    _assert_one_line_error(code, err, needle)


# --- --plugin: before or after the subcommand, on every command ------------------------------------

PLUGIN_CASES = [
    (["--plugin", "", "ls", "codecs"], "--plugin"),
    (["ls", "codecs", "--plugin", " "], "--plugin"),
    (["ls", "codecs", "--plugin"], "--plugin"),
    (["--plugin", "{missing}.py", "ls", "codecs"], "no such file"),
    (["ls", "metrics", "--plugin", "{tmp}"], "is a folder"),
    (["--plugin", "{file}", "ls", "datasets"], "not a .py file"),
    (["data", "ls", "--plugin", "no_such_bench_plugin_zz"], "no_such_bench_plugin_zz"),
    (["report", "{tmp}", "--plugin", "no_such_bench_plugin_zz"], "no_such_bench_plugin_zz"),
    (["gate", "--plugin", "{missing}.py", "--baseline", "{file}", "--candidate", "{tmp}"], "no such file"),
    (["train", "--plugin", "no_such_bench_plugin_zz", "dac", "--config", "tiny", "--data", "{tmp}", "--steps", "1",
      "--out", "{tmp}/t"], "no_such_bench_plugin_zz"),
]


@pytest.mark.parametrize("argv, needle", PLUGIN_CASES, ids=[" ".join(c[0]) for c in PLUGIN_CASES])
def test_plugin_mistakes(argv, needle, paths, monkeypatch, capsys):
    monkeypatch.delenv("BENCH_PLUGINS", raising=False)
    code, err = _call([a.format(**paths) for a in argv], capsys)
    _assert_one_line_error(code, err, needle)


def test_run_with_a_broken_plugin_does_no_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BENCH_PLUGINS", raising=False)
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("raise ImportError('needs mylab_codecs >= 2')\n")
    code, err = _call(RUN_OK + ["--out", str(tmp_path / "run"), "--plugin", str(plugin)], capsys)
    _assert_one_line_error(code, err, "needs mylab_codecs >= 2")
    assert "broken_plugin.py" in err
    assert not (tmp_path / "run").exists()  # refused before any work
