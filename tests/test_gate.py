"""The checkpoint gate on synthetic run directories: pass, regression and error exit codes."""

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bench import gate
from bench.cli import main as bench_main
from bench.reports.synthetic import DEFAULT_CODECS, make_run

TOY = "toy:/ckpts/toy-v1.safetensors"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    base = make_run(root / "base", write_recon=False, with_failures=False)
    baseline = root / "baseline.json"
    assert bench_main(["baseline", "save", str(base), "--out", str(baseline)]) == 0
    return {"root": root, "base": base, "baseline": baseline}


def _gate(args, capsys):
    code = bench_main(["gate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_baseline_document(runs):
    doc = json.loads(runs["baseline"].read_text())
    assert doc["format"] == "bench-baseline" and doc["version"] == 1
    assert len(doc["items"]) == 22 and {"id", "cluster", "domain"} <= set(doc["items"][0])
    assert len(doc["entries"]) == 12
    assert doc["metrics"]["mel_distance"] == {"higher_is_better": False, "unit": ""}
    toy = next(e for e in doc["entries"] if e["codec"] == TOY and e["op"] == "4")
    assert len(toy["values"]["si_sdr"]) == 22 and len(toy["values"]["pesq_wb"]) == 12
    assert toy["nominal_kbps"] == 6.0 and len(toy["measured_kbps"]) == 22
    assert doc["settings"]["dataset"] == "synth"


def test_gate_passes_its_own_baseline(runs, capsys, tmp_path):
    verdict_path = tmp_path / "v.json"
    md_path = tmp_path / "v.md"
    code, out, _ = _gate(["--baseline", str(runs["baseline"]), "--candidate", str(runs["base"]),
                          "--json", str(verdict_path), "--markdown", str(md_path), "--bootstrap", "300"], capsys)
    assert code == 0
    verdict = json.loads(verdict_path.read_text())
    assert verdict["verdict"] == "pass" and verdict["exit_code"] == 0
    assert verdict["counts"]["regression"] == 0 and verdict["counts"]["pass"] == len(verdict["checks"]) > 30
    assert "PASS" in out and "PASS" in md_path.read_text()


def test_gate_fails_a_degraded_candidate(runs, capsys, tmp_path):
    bad = make_run(runs["root"] / "degraded", write_recon=False, with_failures=False, degrade={TOY: 1.0})
    verdict_path = tmp_path / "bad.json"
    code, out, _ = _gate(["--baseline", str(runs["baseline"]), "--candidate", str(bad), "--codec", "toy",
                          "--json", str(verdict_path), "--bootstrap", "300"], capsys)
    assert code == 1
    verdict = json.loads(verdict_path.read_text())
    assert verdict["verdict"] == "regression"
    si = [c for c in verdict["checks"] if c["metric"] == "si_sdr"]
    assert len(si) == 4 and all(c["status"] == "regression" for c in si)
    assert all(c["mean_improvement"] == pytest.approx(-1.0) for c in si)
    assert {e["baseline_codec"] for e in verdict["entries"]} == {TOY}  # --codec restricts the comparison
    assert "REGRESSION" in out and "worse by more than the margin" in out
    # a generous margin lets the same candidate through
    code, _, _ = _gate(["--baseline", str(runs["baseline"]), "--candidate", str(bad), "--codec", "toy",
                        "--metrics", "si_sdr", "--margin", "1.5", "--bootstrap", "300"], capsys)
    assert code == 0


def test_new_failures_and_higher_bitrate_are_regressions(runs, capsys):
    failing = make_run(runs["root"] / "failing", write_recon=False, with_failures=True)
    code, out, _ = _gate(["--baseline", str(runs["baseline"]), "--candidate", str(failing), "--bootstrap", "200"], capsys)
    assert code == 1 and "candidate failed on 1 item" in out
    fat = dict(DEFAULT_CODECS)
    ops, offset, _ = fat[TOY]
    fat[TOY] = (ops, offset, 1.2)  # 20 % more bits (and better quality for it)
    greedy = make_run(runs["root"] / "greedy", codecs=fat, write_recon=False, with_failures=False)
    code, out, _ = _gate(["--baseline", str(runs["baseline"]), "--candidate", str(greedy), "--codec", "toy",
                          "--bootstrap", "200"], capsys)
    assert code == 1 and "measured_kbps" in out


def _noisy_copy(src: Path, dst: Path, sd: float, seed: int) -> Path:
    shutil.copytree(src, dst)
    rng = np.random.default_rng(seed)
    con = sqlite3.connect(dst / "results.sqlite")
    rows = con.execute("SELECT rowid, value FROM results WHERE codec=? AND metric='si_sdr'", (TOY,)).fetchall()
    con.executemany("UPDATE results SET value=? WHERE rowid=?", [(v + rng.normal(0, sd), rid) for rid, v in rows])
    con.commit()
    con.close()
    return dst


def test_inconclusive_passes_unless_strict(runs, capsys, tmp_path):
    noisy = _noisy_copy(runs["base"], runs["root"] / "noisy", sd=1.0, seed=5)
    args = ["--baseline", str(runs["baseline"]), "--candidate", str(noisy), "--codec", "toy", "--metrics", "si_sdr",
            "--margin", "0.1", "--bootstrap", "500", "--json", str(tmp_path / "n.json")]
    code, _, _ = _gate(args, capsys)
    verdict = json.loads((tmp_path / "n.json").read_text())
    statuses = {c["status"] for c in verdict["checks"] if c["metric"] == "si_sdr"}
    assert "inconclusive" in statuses and "regression" not in statuses and code == 0
    code, _, _ = _gate(args + ["--strict"], capsys)
    assert code == 1


@pytest.mark.parametrize("make_args,needle", [
    (lambda r: ["--baseline", str(r["root"] / "missing.json"), "--candidate", str(r["base"])], "baseline not found"),
    (lambda r: ["--baseline", str(r["base"] / "results.sqlite"), "--candidate", str(r["base"])], "not valid JSON"),
    (lambda r: ["--baseline", str(r["baseline"]), "--candidate", str(r["root"] / "nope")], "no such checkpoint"),
    (lambda r: ["--baseline", str(r["baseline"]), "--candidate", str(r["base"]), "--metrics", "visqol"], "not in the baseline"),
    (lambda r: ["--baseline", str(r["baseline"]), "--candidate", str(r["base"]), "--margin", "lots"], "cannot read"),
    (lambda r: ["--baseline", str(r["baseline"]), "--candidate", str(r["base"]), "--margin", "pesq=1"], "not gated here"),
    (lambda r: ["--baseline", str(r["baseline"]), "--candidate", str(r["base"]), "--codec", "dac"], "none of the baseline"),
])
def test_errors_exit_2(runs, capsys, make_args, needle):
    code, out, err = _gate(make_args(runs), capsys)
    assert code == 2
    assert needle in out + err


def test_baseline_save_errors(runs, capsys, tmp_path):
    assert bench_main(["baseline", "save", str(tmp_path / "none"), "--out", str(tmp_path / "b.json")]) == 2
    assert bench_main(["baseline", "save", str(runs["base"]), "--out", str(tmp_path / "b.json"),
                       "--metrics", "nope"]) == 2
    assert "not in the run" in capsys.readouterr().err
    assert bench_main(["baseline", "save", str(runs["base"]), "--out", str(tmp_path / "b.json"),
                       "--metrics", "si_sdr", "--codecs", TOY]) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert set(doc["metrics"]) == {"si_sdr"} and {e["codec"] for e in doc["entries"]} == {TOY}


def test_checkpoint_candidate_runs_on_the_baseline_items(runs, tmp_path):
    ckpt = tmp_path / "new-ckpt.safetensors"
    ckpt.write_bytes(b"not read by the fake runner")
    seen = {}

    def fake_run(cfg):
        seen["cfg"] = cfg
        key = f"toy:{ckpt.resolve()}"
        ops, offset, ratio = DEFAULT_CODECS[TOY]
        return make_run(Path(cfg.out_dir), codecs={key: (ops, offset, ratio)}, write_recon=False, with_failures=False)

    verdict = gate.gate(runs["baseline"], str(ckpt), out_dir=tmp_path / "cand", run_fn=fake_run, n_boot=200)
    cfg = seen["cfg"]
    assert cfg.codecs == ",".join(f"toy:{ckpt.resolve()}@{op}" for op in ("1", "2", "4", "8"))
    doc = json.loads(runs["baseline"].read_text())
    assert cfg.item_ids == [it["id"] for it in doc["items"]] and cfg.limit is None
    assert cfg.metrics == "mel_distance,pesq_wb,si_sdr" and cfg.dataset == "synth" and cfg.split == "test"
    assert verdict["verdict"] == "pass" and verdict["candidate_kind"] == "checkpoint"
    assert verdict["codec_mapping"] == {TOY: f"toy:{ckpt.resolve()}"}

    def broken_run(cfg):
        raise RuntimeError("weights do not fit the architecture")

    with pytest.raises(gate.GateError, match="running the candidate failed"):
        gate.gate(runs["baseline"], str(ckpt), out_dir=tmp_path / "cand2", run_fn=broken_run)
    with pytest.raises(gate.GateError, match="not in the baseline"):
        gate.candidate_spec(doc, str(ckpt), codec="dac")


def test_parse_margins():
    m = gate.parse_margins("0.2,si_sdr=0.5,pesq_wb=2%", ["si_sdr", "pesq_wb", "mel_distance"])
    assert m == {"si_sdr": (0.5, False), "pesq_wb": (0.02, True), "mel_distance": (0.2, False)}
    assert gate.parse_margins(None, ["a"]) == {"a": (0.01, True)}
    with pytest.raises(gate.GateError):
        gate.parse_margins("-1", ["a"])
