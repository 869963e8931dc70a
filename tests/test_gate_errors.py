"""User mistakes in ``bench gate`` and ``bench baseline``: exit 2 and one line on stderr, never a traceback.

And the opposite case: a candidate that fails on every item is a regression (exit 1), not an error.
"""

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gate
from bench.cli import main as bench_main
from bench.reports.synthetic import make_run
from bench.store import Store

TOY = "toy:/ckpts/toy-v1.safetensors"
REPO = Path(__file__).resolve().parents[1]
RUNNER_ERROR = "RuntimeError: weights do not fit the architecture"


# --- fixtures and helpers ---------------------------------------------------------------------

def _sqlite_with(path: Path, *statements: str) -> Path:
    """An SQLite file made by ``statements`` (a database that is not a bench results database)."""
    con = sqlite3.connect(path)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run, its baseline, and a set of paths that are not what the commands expect."""
    root = tmp_path_factory.mktemp("gate_errors")
    base = make_run(root / "base", write_recon=False, with_failures=False)
    baseline = root / "baseline.json"
    assert bench_main(["baseline", "save", str(base), "--out", str(baseline)]) == 0
    (root / "notes.txt").write_text("not a database\n")
    (root / "garbage.sqlite").write_bytes(b"\x00\x01 definitely not SQLite " * 40)
    (root / "empty_dir").mkdir()
    (root / "file").write_text("a regular file: nothing can be created under it\n")
    _sqlite_with(root / "foreign.sqlite", "CREATE TABLE notes (id INTEGER, body TEXT)",
                 "INSERT INTO notes VALUES (1, 'mine')")
    _sqlite_with(root / "partial.sqlite", "CREATE TABLE runs (run_id TEXT, created_utc TEXT, manifest TEXT)",
                 "INSERT INTO runs VALUES ('r1', '2026-01-01T00:00:00Z', '{}')",
                 "CREATE TABLE results (run_id TEXT)", "CREATE TABLE items (run_id TEXT)")  # no coded, skipped, ...
    Store(root / "norun.sqlite").close()  # every table, no run in it
    return {"root": root, "base": base, "baseline": baseline, "file": root / "file"}


def _cli(args, capsys):
    """``bench ARGS`` in-process: (exit code, stdout, stderr). argparse errors leave via SystemExit;
    anything else escaping (a traceback) fails the test."""
    try:
        code = bench_main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_usage_error(code, err, needle=None):
    """Exit 2, exactly one line on stderr (containing ``needle``), no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    if needle is not None:
        assert needle in lines[0], lines[0]


def _subprocess(args, cwd):
    """``python -m bench.cli ARGS`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bench.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _gate_args(runs, **over):
    """``gate`` arguments on the module's baseline and run, with options replaced by ``over``."""
    opts = {"--baseline": runs["baseline"], "--candidate": runs["base"], "--bootstrap": "50"}
    opts.update(over)
    return ["gate", *[f"{k}={v}" for k, v in opts.items()]]


def _failed_copy(src: Path, dst: Path, where: str = "1=1", params=(), *, coded: bool = True) -> Path:
    """A copy of a run in which every results row matching ``where`` failed, as the runner records it
    (with ``coded``, the encode/decode rows too: the codec itself failed)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("synth_audio"))
    con = sqlite3.connect(dst / "results.sqlite")
    reason = f"codec || '@' || op || ' failed on /data/' || item_id || '.wav: {RUNNER_ERROR}'"
    con.execute(f"UPDATE results SET status='failed', value=NULL, error={reason} WHERE {where}", params)
    if coded:
        con.execute(f"UPDATE coded SET status='failed', measured_kbps=NULL, error={reason} WHERE {where}", params)
    con.commit()
    con.close()
    return dst


def _scored_values(doc, codec=None):
    """How many (entry, metric, item) values a baseline has (optionally for one codec key)."""
    return sum(v is not None for e in doc["entries"] if codec in (None, e["codec"])
               for per_item in e["values"].values() for v in per_item.values())


# --- 1. a candidate that fails everywhere is a regression -------------------------------------

def test_candidate_failing_every_item_is_a_regression(runs, capsys, tmp_path):
    broken = _failed_copy(runs["base"], tmp_path / "broken")
    verdict_path = tmp_path / "v.json"
    code, out, err = _cli(_gate_args(runs, **{"--candidate": broken, "--json": verdict_path}), capsys)
    assert code == 1, out + err
    assert err == ""
    verdict = json.loads(verdict_path.read_text())
    n = _scored_values(json.loads(runs["baseline"].read_text()))
    assert verdict["verdict"] == "regression" and verdict["exit_code"] == 1
    assert verdict["reason"].startswith(f"every pair failed: the candidate failed on all {n} value(s)")
    # per-item runner messages differ only in the item path: they are counted as one reason
    assert f"{n}x {RUNNER_ERROR}" in verdict["reason"]
    metric_checks = [c for c in verdict["checks"] if c["metric"] != "measured_kbps"]
    assert metric_checks and all(c["status"] == "regression" for c in metric_checks)
    assert all(c["failure_reasons"][0][0] == RUNNER_ERROR for c in metric_checks)
    assert "every pair failed" in out and "REGRESSION" in out


def test_candidate_failing_every_item_of_one_codec_is_a_regression(runs, capsys, tmp_path):
    broken = _failed_copy(runs["base"], tmp_path / "broken_toy", "codec=?", (TOY,))
    code, out, err = _cli(_gate_args(runs, **{"--candidate": broken, "--codec": "toy",
                                              "--json": tmp_path / "v.json"}), capsys)
    assert code == 1, out + err
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["reason"].startswith("every pair failed")
    assert f"{_scored_values(json.loads(runs['baseline'].read_text()), TOY)}x {RUNNER_ERROR}" in verdict["reason"]


def test_one_metric_failing_every_item_is_a_regression_not_an_error(runs, capsys, tmp_path):
    broken = _failed_copy(runs["base"], tmp_path / "broken_si", "codec=? AND op='4' AND metric='si_sdr'", (TOY,),
                          coded=False)
    code, out, err = _cli(_gate_args(runs, **{"--candidate": broken, "--json": tmp_path / "v.json"}), capsys)
    assert code == 1, out + err
    verdict = json.loads((tmp_path / "v.json").read_text())
    (check,) = [c for c in verdict["checks"] if c["codec"] == TOY and c["op"] == "4" and c["metric"] == "si_sdr"]
    assert check["status"] == "regression" and check["reason"].startswith("candidate failed on all 22 item(s)")
    assert verdict["counts"]["error"] == 0 and not verdict["reason"].startswith("every pair failed")


# --- 2. a baseline with missing or mistyped fields --------------------------------------------

def _set(path, value):
    """A mutation that sets ``doc[path...] = value`` (``value`` may be a function of the document)."""
    def apply(doc):
        *head, last = path
        target = doc
        for k in head:
            target = target[k]
        target[last] = value(doc) if callable(value) else value
    return apply


def _delete(path):
    """A mutation that deletes ``doc[path...]``."""
    def apply(doc):
        *head, last = path
        target = doc
        for k in head:
            target = target[k]
        del target[last]
    return apply


def _first_item(doc):
    """The id of the baseline's first item."""
    return doc["items"][0]["id"]


def _set_item_value(entry, field, metric, value):
    """A mutation of one item's value in ``entries[entry].FIELD[.metric]``."""
    def apply(doc):
        target = doc["entries"][entry][field]
        target = target[metric] if metric else target
        target[_first_item(doc)] = value
    return apply


def _no_scored_values(doc):
    """Every value of every entry null: a baseline with nothing to gate on."""
    for e in doc["entries"]:
        e["values"] = {m: dict.fromkeys(per_item) for m, per_item in e["values"].items()}


BAD_BASELINES = [
    (_set(["entries"], "entries"), "field 'entries' must be a non-empty list"),
    (_set(["entries"], []), "field 'entries' must be a non-empty list"),
    (_set(["entries", 3], None), "field 'entries[3]' must be an object"),
    (_set(["entries", 3, "values"], "abc"), "field 'entries[3].values' must be an object"),
    (_set(["entries", 3, "values"], None), "field 'entries[3].values' must be an object"),
    (_delete(["entries", 3, "values"]), "field 'entries[3].values' must be an object"),
    (_set(["entries", 3, "values", "si_sdr"], [1.0, 2.0]), "field 'entries[3].values.si_sdr' must be an object"),
    (_set(["entries", 3, "values", "si_sdr"], 5), "field 'entries[3].values.si_sdr' must be an object"),
    (_set_item_value(3, "values", "si_sdr", "abc"), "field 'entries[3].values.si_sdr."),
    (_set_item_value(3, "values", "si_sdr", [1.0]), "must be a number or null, got a list"),
    (_set_item_value(3, "values", "si_sdr", True), "must be a number or null, got a boolean"),
    (_set(["entries", 3, "values", "visqol"], {}), "has metric 'visqol', which 'metrics' does not list"),
    (_set(["entries", 3, "values", "si_sdr", "ghost-item"], 1.0), "has item 'ghost-item', which 'items' does not list"),
    (_set(["entries", 3, "measured_kbps"], None), "field 'entries[3].measured_kbps' must be an object"),
    (_delete(["entries", 3, "measured_kbps"]), "field 'entries[3].measured_kbps' must be an object"),
    (_set_item_value(3, "measured_kbps", None, "6 kbps"), "field 'entries[3].measured_kbps."),
    (_set(["entries", 3, "errors"], []), "field 'entries[3].errors' must be an object"),
    (_set_item_value(3, "errors", None, 1), "field 'entries[3].errors"),
    (_delete(["entries", 3, "codec"]), "field 'entries[3].codec' must be a non-empty string"),
    (_set(["entries", 3, "codec"], ["toy"]), "field 'entries[3].codec' must be a non-empty string"),
    (_set(["entries", 3, "op"], 4), "field 'entries[3].op' must be a non-empty string, got a number"),
    (_set(["entries", 3, "nominal_kbps"], "6"), "field 'entries[3].nominal_kbps' must be a number or null"),
    (_set(["entries", 3, "checkpoint_hash"], 12), "field 'entries[3].checkpoint_hash'"),
    (_set(["entries", 4], lambda d: d["entries"][3]), "field 'entries[4]' repeats"),
    (_set(["items"], "items"), "field 'items' must be a non-empty list"),
    (_set(["items"], []), "field 'items' must be a non-empty list"),
    (_set(["items", 0], None), "field 'items[0]' must be an object"),
    (_set(["items", 0, "id"], 7), "field 'items[0].id' must be a non-empty string"),
    (_delete(["items", 0, "id"]), "field 'items[0].id' must be a non-empty string"),
    (_set(["items", 1, "id"], _first_item), "field 'items[1].id' repeats item"),
    (_set(["items", 0, "cluster"], ["spk0"]), "field 'items[0].cluster' must be a string or null"),
    (_set(["metrics"], []), "field 'metrics' must be a non-empty object"),
    (_set(["metrics"], {}), "field 'metrics' must be a non-empty object"),
    (_delete(["metrics"]), "field 'metrics' must be a non-empty object"),
    (_set(["metrics", "si_sdr"], "dB"), "field 'metrics.si_sdr' must be an object"),
    (_set(["metrics", "si_sdr", "higher_is_better"], "yes"),
     "field 'metrics.si_sdr.higher_is_better' must be true or false"),
    (_delete(["metrics", "si_sdr", "higher_is_better"]), "field 'metrics.si_sdr.higher_is_better'"),
    (_set(["settings"], "fast"), "field 'settings' must be an object"),
    (_set(["dataset"], 5), "field 'dataset' must be a string or null"),
    (_set(["version"], "1"), "baseline version '1'"),
    (_delete(["format"]), "not a bench baseline"),
    (_no_scored_values, "nothing to gate on"),
]


@pytest.mark.parametrize("mutate,needle", BAD_BASELINES)
def test_bad_baseline_fields_are_named(runs, capsys, tmp_path, mutate, needle):
    doc = json.loads(runs["baseline"].read_text())
    mutate(doc)
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))
    code, _, err = _cli(_gate_args(runs, **{"--baseline": bad}), capsys)
    _assert_usage_error(code, err, needle)


@pytest.mark.parametrize("text,needle", [
    ("[1, 2]", "not a bench baseline"),
    ('"bench-baseline"', "not a bench baseline"),
    ("{" * 100000, "not valid JSON"),
])
def test_baseline_that_is_not_an_object(runs, capsys, tmp_path, text, needle):
    bad = tmp_path / "b.json"
    bad.write_text(text)
    code, _, err = _cli(_gate_args(runs, **{"--baseline": bad}), capsys)
    _assert_usage_error(code, err, needle)


def test_non_finite_baseline_values_are_refused(runs, capsys, tmp_path):
    doc = json.loads(runs["baseline"].read_text())
    item = _first_item(doc)
    doc["entries"][3]["values"]["si_sdr"][item] = float("nan")
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))  # Python writes the NaN literal, and json.loads reads it back
    code, _, err = _cli(_gate_args(runs, **{"--baseline": bad}), capsys)
    _assert_usage_error(code, err, f"field 'entries[3].values.si_sdr.{item}' must be a number or null, got nan")


def test_mistyped_baseline_in_a_real_process(runs, tmp_path):
    """The CI view: a fresh ``python -m bench.cli gate`` process, relative baseline path, exit 2, one line."""
    doc = json.loads(runs["baseline"].read_text())
    doc["entries"][3]["values"] = ["not", "an", "object"]
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "b.json").write_text(json.dumps(doc))
    proc = _subprocess(["gate", "--baseline", "ci/b.json", "--candidate", runs["base"]], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: baseline ci/b.json: field 'entries[3].values' must be an object "
                                   "{metric: {item id: value}}, got a list")


def test_validate_baseline_accepts_what_baseline_save_writes(runs):
    doc = json.loads(runs["baseline"].read_text())
    gate.validate_baseline(doc, "ok.json")  # no exception
    with pytest.raises(gate.GateError, match=r"^baseline ok.json: field 'entries\[0\].op'"):
        doc["entries"][0]["op"] = ""
        gate.validate_baseline(doc, "ok.json")


# --- 3. option values refused at argument-parsing time ----------------------------------------

PARSE_TIME_BAD = [
    ("--bootstrap", "0"), ("--bootstrap", "-5"), ("--bootstrap", "2.5"), ("--bootstrap", "10000001"),
    ("--kbps-tolerance", "-0.1"), ("--kbps-tolerance", "nan"), ("--kbps-tolerance", "inf"),
    ("--confidence", "0.5"), ("--confidence", "1"), ("--confidence", "0.2"), ("--confidence", "1.5"),
    ("--confidence", "nan"), ("--seed", "-1"),
    ("--margin", "1%%"), ("--margin", "abc"), ("--margin", "-1%"), ("--margin", "-0.5"), ("--margin", "nan"),
    ("--margin", "inf"), ("--margin", "1%x"), ("--margin", "5 percent"), ("--margin", "%"), ("--margin", "1,2"),
    ("--margin", "si_sdr=1,si_sdr=2"), ("--margin", "=1"), ("--margin", "si_sdr="), ("--margin", "si_sdr=1%%"),
    ("--metrics", ","), ("--metrics", ""),
]


@pytest.mark.parametrize("option,value", PARSE_TIME_BAD)
def test_bad_option_values_are_refused_while_parsing(runs, capsys, option, value):
    # the baseline does not exist: only a parse-time check can report the option instead of that
    args = _gate_args(runs, **{"--baseline": runs["root"] / "missing.json", option: value})
    code, _, err = _cli(args, capsys)
    _assert_usage_error(code, err, f"bench gate: error: argument {option}:")


@pytest.mark.parametrize("margin,expected", [
    ("0.1", {"si_sdr": (0.1, False)}), ("1%", {"si_sdr": (0.01, True)}), (" 1 % ", {"si_sdr": (0.01, True)}),
    ("1e-2", {"si_sdr": (0.01, False)}), ("0", {"si_sdr": (0.0, False)}), ("", {"si_sdr": (0.01, True)}),
    ("0.1,", {"si_sdr": (0.1, False)}), ("si_sdr=0.5", {"si_sdr": (0.5, False)}),
    ("0.2, si_sdr = 2%", {"si_sdr": (0.02, True)}),
])
def test_valid_margin_forms_still_work(runs, capsys, margin, expected):
    assert gate.parse_margins(margin, ["si_sdr"]) == expected
    code, out, err = _cli(_gate_args(runs, **{"--margin": margin, "--metrics": "si_sdr"}), capsys)
    assert code == 0, out + err


def test_programmatic_gate_checks_the_same_ranges(runs):
    for kwargs in ({"confidence": float("nan")}, {"confidence": 1.0}, {"kbps_tolerance": -1.0}, {"n_boot": 0},
                   {"seed": -3}):
        with pytest.raises(gate.GateError):
            gate.gate(runs["baseline"], str(runs["base"]), **kwargs)


# --- 4. results databases are only read; outputs are checked first ----------------------------

@pytest.mark.parametrize("name,needle", [
    ("missing", "no such folder"),
    ("empty_dir", "no results.sqlite here"),
    ("notes.txt", "not a bench results database"),
    ("garbage.sqlite", "not a bench results database"),
    ("foreign.sqlite", "not a bench results database (no table "),
    ("partial.sqlite", "not a bench results database"),
    ("norun.sqlite", "contains no runs"),
])
def test_baseline_save_of_something_that_is_not_a_run(runs, capsys, tmp_path, name, needle):
    target = runs["root"] / name
    before = target.read_bytes() if target.is_file() else None
    code, _, err = _cli(["baseline", "save", target, "--out", tmp_path / "b.json"], capsys)
    _assert_usage_error(code, err, needle)
    assert not (tmp_path / "b.json").exists()
    if before is not None:  # opened read-only: not a byte changed (a writer would have added its tables)
        assert target.read_bytes() == before
        assert not [p for p in target.parent.iterdir() if p.name.startswith(name + "-")]


@pytest.mark.parametrize("name,needle", [
    ("missing", "no such checkpoint or run directory"),
    ("empty_dir", "neither a run directory nor a checkpoint"),
    ("garbage.sqlite", "not a bench results database"),
    ("foreign.sqlite", "not a bench results database"),
    ("norun.sqlite", "contains no runs"),
])
def test_gate_candidate_that_is_not_a_run(runs, capsys, tmp_path, name, needle):
    target = runs["root"] / name
    before = target.read_bytes() if target.is_file() else None
    code, _, err = _cli(_gate_args(runs, **{"--candidate": target, "--out": tmp_path / "cand",
                                              "--json": tmp_path / "v.json"}), capsys)
    _assert_usage_error(code, err, needle)
    assert json.loads((tmp_path / "v.json").read_text())["verdict"] == "error"  # CI still gets a verdict
    assert not (tmp_path / "cand").exists()
    if before is not None:
        assert target.read_bytes() == before


def _read_only_mount_works(folder: Path) -> bool:
    """Whether this machine lets us bind-mount ``folder`` read-only in a private mount namespace."""
    if not shutil.which("unshare"):
        return False
    q = shlex.quote(str(folder))
    probe = f"mount --bind {q} {q} && mount -o remount,bind,ro {q} && ! touch {q}/probe 2>/dev/null"
    try:
        proc = subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True, timeout=30, check=False)
        return proc.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_baseline_and_gate_on_a_read_only_filesystem(runs, tmp_path, journal):
    ro = tmp_path / "ro"
    shutil.copytree(runs["base"], ro / "run", ignore=shutil.ignore_patterns("synth_audio"))
    if journal == "wal":  # a run left in WAL mode: reading it needs a -shm file it cannot create
        con = sqlite3.connect(ro / "run" / "results.sqlite")
        con.execute("PRAGMA journal_mode=WAL")
        con.close()
    if not _read_only_mount_works(ro):
        pytest.skip("cannot mount a read-only folder here (needs unshare and mount namespaces)")
    out = tmp_path / "out"
    out.mkdir()
    q = {k: shlex.quote(str(v)) for k, v in {"ro": ro, "run": ro / "run", "b": out / "b.json", "v": out / "v.json",
                                            "py": sys.executable}.items()}
    script = (f"mount --bind {q['ro']} {q['ro']} && mount -o remount,bind,ro {q['ro']} && "
              f"{q['py']} -m bench.cli baseline save {q['run']} --out {q['b']} && "
              f"{q['py']} -m bench.cli gate --baseline {q['b']} --candidate {q['run']} --bootstrap 50 --json {q['v']}")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads((out / "v.json").read_text())["verdict"] == "pass"


@pytest.mark.parametrize("option", ["--json", "--markdown", "--out", "--cache-dir"])
def test_gate_outputs_that_cannot_be_written_are_refused_first(runs, capsys, option):
    # missing baseline: only a check made before any work can name the option instead
    args = _gate_args(runs, **{"--baseline": runs["root"] / "missing.json", option: runs["file"] / "x" / "v.json"})
    code, _, err = _cli(args, capsys)
    _assert_usage_error(code, err, f"bench gate: error: argument {option}:")


@pytest.mark.parametrize("out", ["{file}/b.json", "{file}/sub/b.json", "{root}"])
def test_baseline_out_that_cannot_be_written_is_refused_first(runs, capsys, out):
    code, _, err = _cli(["baseline", "save", runs["root"] / "missing", "--out", out.format(**runs)], capsys)
    _assert_usage_error(code, err, "bench baseline: error: argument --out:")


def test_outputs_never_overwrite_inputs(runs, capsys, tmp_path):
    baseline = tmp_path / "b.json"
    shutil.copy(runs["baseline"], baseline)
    before = baseline.read_bytes()
    code, _, err = _cli(_gate_args(runs, **{"--baseline": baseline, "--json": baseline}), capsys)
    _assert_usage_error(code, err, "--json")
    assert baseline.read_bytes() == before
    code, _, err = _cli(_gate_args(runs, **{"--json": tmp_path / "v", "--markdown": tmp_path / "v"}), capsys)
    _assert_usage_error(code, err, "--markdown")
    db = runs["base"] / "results.sqlite"
    before = db.read_bytes()
    code, _, err = _cli(["baseline", "save", runs["base"], "--out", db], capsys)
    _assert_usage_error(code, err, "would be overwritten")
    assert db.read_bytes() == before


# --- 5. siblings: other inputs a user can get wrong -------------------------------------------

def test_baseline_names_that_match_nothing(runs, capsys, tmp_path):
    out = tmp_path / "b.json"
    for extra, needle in ((["--run-id", "nope"], "no run 'nope'"),
                          (["--metrics", "si_sdr,nope"], "--metrics: nope not in the run"),
                          (["--codecs", "toy"], "--codecs: toy not in the run"),
                          (["--codecs", ","], "argument --codecs: expected comma-separated names")):
        code, _, err = _cli(["baseline", "save", runs["base"], "--out", out, *extra], capsys)
        _assert_usage_error(code, err, needle)
        assert not out.exists()


def test_gate_names_that_match_nothing(runs, capsys, tmp_path):
    code, _, err = _cli(_gate_args(runs, **{"--codec": "dac"}), capsys)
    _assert_usage_error(code, err, "--codec 'dac' names none of the baseline's codecs (it has mp3, opus, toy)")
    code, _, err = _cli(_gate_args(runs, **{"--metrics": "si_sdr,visqol"}), capsys)
    _assert_usage_error(code, err, "--metrics visqol not in the baseline")
    # a metric the baseline lists but no entry has values for: nothing would be gated, so no pass
    doc = json.loads(runs["baseline"].read_text())
    doc["metrics"]["visqol"] = {"higher_is_better": True, "unit": "MOS"}
    hollow = tmp_path / "b.json"
    hollow.write_text(json.dumps(doc))
    code, _, err = _cli(_gate_args(runs, **{"--baseline": hollow, "--metrics": "visqol"}), capsys)
    _assert_usage_error(code, err, "no baseline values for --metrics visqol")


def test_undecidable_comparison_says_why_on_stderr(runs, capsys, tmp_path):
    """A candidate run that lacks items the baseline scored cannot be compared: exit 2 and one line saying so."""
    partial = tmp_path / "partial_run"
    shutil.copytree(runs["base"], partial, ignore=shutil.ignore_patterns("synth_audio"))
    con = sqlite3.connect(partial / "results.sqlite")
    con.execute("DELETE FROM results WHERE codec=? AND op='4' AND item_id='sound0'", (TOY,))
    con.commit()
    con.close()
    code, out, err = _cli(_gate_args(runs, **{"--candidate": partial}), capsys)
    _assert_usage_error(code, err, "could not be decided: toy:/ckpts/toy-v1.safetensors@4 ")
    assert "candidate has no result for 1 item(s)" in err and "ERROR" in out


def test_baseline_that_is_a_folder(runs, capsys):
    code, _, err = _cli(_gate_args(runs, **{"--baseline": runs["root"] / "empty_dir"}), capsys)
    _assert_usage_error(code, err, "baseline is not a file")


def test_bad_margin_metric_is_refused_before_a_checkpoint_runs(runs, tmp_path):
    ckpt = tmp_path / "c.safetensors"
    ckpt.write_bytes(b"x")

    def must_not_run(cfg):
        raise AssertionError("the candidate ran before the options were checked")

    with pytest.raises(gate.GateError, match="not gated here"):
        gate.gate(runs["baseline"], str(ckpt), margin="pesq=1", run_fn=must_not_run)
    with pytest.raises(gate.GateError, match="names none of the baseline's codecs"):
        gate.gate(runs["baseline"], str(ckpt), codec="dac", run_fn=must_not_run)


# --- fuzz: every option of both commands with a table of bad values ---------------------------

UNDER_FILE = "{file}/x/y"
GATE_FUZZ = {
    "--baseline": ["{root}/missing.json", "{root}/empty_dir", "{root}/notes.txt", "{root}/garbage.sqlite", "",
                   "{base}/results.sqlite"],
    "--candidate": ["{root}/missing", "{root}/empty_dir", "{root}/garbage.sqlite", "{root}/foreign.sqlite",
                    "{root}/partial.sqlite", "{root}/norun.sqlite", ""],
    "--codec": ["dac", "", "toy:/other.safetensors", "toy,opus"],
    "--metrics": ["", ",", " , ", "visqol", "si_sdr,visqol"],
    "--margin": ["1%%", "abc", "-1%", "nan", "1%x", "5 percent", "pesq=1", "si_sdr=x", "=", "1=2=3", "1,2%"],
    "--confidence": ["0", "0.5", "1", "1.5", "-0.9", "nan", "inf", "x", "", "95%"],
    "--kbps-tolerance": ["-0.1", "-inf", "nan", "inf", "x", "", "5%"],
    "--bootstrap": ["0", "-1", "1.5", "x", "", "1e3", "99999999999"],
    "--seed": ["-1", "x", "1.5", ""],
    "--out": [UNDER_FILE, "{file}"],
    "--json": [UNDER_FILE, "{root}", "", "{baseline}"],
    "--markdown": [UNDER_FILE, "{root}", ""],
    "--cache-dir": [UNDER_FILE, "{file}"],
    "--device": ["gpu", "cuda:99", "", "tpu"],
    "--strict": ["yes"],
}
BASELINE_FUZZ = {
    "ACTION": ["load", "", "SAVE"],
    "RUN_DIR": ["{root}/missing", "{root}/notes.txt", "{root}/garbage.sqlite", "{root}/foreign.sqlite",
                "{root}/partial.sqlite", "{root}/norun.sqlite", "{root}/empty_dir", ""],
    "--out": [UNDER_FILE, "{root}", "", "{base}/results.sqlite"],
    "--metrics": ["", ",", "nope", "si_sdr,nope"],
    "--codecs": ["", ",", "nope", "toy"],
    "--run-id": ["nope", ""],
}
FUZZ_CASES = ([("gate", opt, v) for opt, vals in GATE_FUZZ.items() for v in vals]
              + [("baseline", opt, v) for opt, vals in BASELINE_FUZZ.items() for v in vals])


def _fuzz_args(runs, command, option, value, tmp):
    """The command line of one fuzz case: a working command with one option set to ``value``."""
    value = value.format(**runs)
    if command == "gate":
        return _gate_args(runs, **{option: value})
    pos = {"ACTION": "save", "RUN_DIR": str(runs["base"])}
    opts = {"--out": str(tmp / "b.json")}
    (pos if option in pos else opts)[option] = value
    return ["baseline", pos["ACTION"], pos["RUN_DIR"], *[f"{k}={v}" for k, v in opts.items()]]


@pytest.mark.parametrize("command,option,value", FUZZ_CASES)
def test_fuzz_bad_values_exit_2_without_traceback(runs, capsys, tmp_path, monkeypatch, command, option, value):
    monkeypatch.chdir(tmp_path)  # a relative or empty path lands here, never in the repository
    code, _, err = _cli(_fuzz_args(runs, command, option, value, tmp_path), capsys)
    _assert_usage_error(code, err)
    assert not (tmp_path / "runs").exists()  # no candidate run was started


def test_fuzz_baseline_is_sound(runs, capsys, tmp_path):
    """The unfuzzed command lines of the fuzz test succeed, so each case fails for its one bad value."""
    assert _cli(_gate_args(runs), capsys)[0] == 0
    assert _cli(["baseline", "save", runs["base"], "--out", tmp_path / "b.json"], capsys)[0] == 0
