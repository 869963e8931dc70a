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
    """Run ``bench gate ARGS`` in-process: (exit code, stdout, stderr); argparse errors exit via SystemExit."""
    try:
        code = bench_main(["gate", *args])
    except SystemExit as exc:
        code = exc.code
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
    assert "opus@6" in verdict["not_compared"] and "Not in the candidate" in out
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


@pytest.mark.slow
def test_end_to_end_with_a_real_dac_checkpoint_and_noisy_weights(tmp_path, capsys):
    """The real runner and DAC codec: a tiny checkpoint passes its own baseline; noise in its weights fails."""
    torch = pytest.importorskip("torch")
    soundfile = pytest.importorskip("soundfile")
    from bench.models.dac_model import CONFIGS, DAC
    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig
    from bench.models.checkpoint import module_tensors, save_checkpoint

    torch.set_num_threads(1)
    sr, clips = 16000, []
    (tmp_path / "clips").mkdir()
    for k, f0 in enumerate([150.0, 220.0, 330.0, 440.0]):
        t = np.arange(int(0.3 * sr)) / sr
        x = sum(np.sin(2 * np.pi * f0 * h * t + 2 * np.sin(2 * np.pi * 4 * t)) / h for h in range(1, 5))
        x = (0.4 * x / np.abs(x).max()).astype(np.float32)
        soundfile.write(tmp_path / "clips" / f"tone{k}.wav", x, sr)
        clips.append(x)
    # a few steps of spectral reconstruction training, so the baseline is a (poor but real) codec whose
    # mel distance is well below a random model's, and noise in its weights undoes that
    torch.manual_seed(0)
    cfg = CONFIGS["tiny"]
    model = DAC(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = torch.from_numpy(np.stack(clips))[:, None]
    window = torch.hann_window(256)

    def log_mag(y):
        return torch.log(torch.stft(y.reshape(-1, y.shape[-1]), 256, 64, window=window, return_complex=True).abs() + 1e-5)

    for _ in range(20):
        out = model(batch, cfg.n_codebooks)
        loss = ((out.audio - batch).abs().mean() + (log_mag(out.audio) - log_mag(batch)).abs().mean()
                + out.commitment_loss.mean() + out.codebook_loss.mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    card = {"model": "dac", "name": "dac_tiny", "config": cfg.to_dict(), "training": {"steps": 20, "data": "test tones"}}
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, module_tensors("generator", model), card)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            scale = p.std() if p.numel() > 1 else p.abs() + 1e-3
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    noisy = tmp_path / "noisy.safetensors"
    save_checkpoint(noisy, module_tensors("generator", model), card)

    run = run_benchmark(RunConfig(codecs=f"dac:{good}@4", dataset="folder", root=str(tmp_path / "clips"),
                                  dataset_options={"domain": "music"}, metrics="mel_distance", workers=1,
                                  progress=False, out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache")))
    baseline = tmp_path / "baseline.json"
    assert bench_main(["baseline", "save", str(run), "--out", str(baseline)]) == 0
    code, out, _ = _gate(["--baseline", str(baseline), "--candidate", str(good), "--out", str(tmp_path / "cand-good"),
                          "--json", str(tmp_path / "good.json")], capsys)
    assert code == 0, out
    assert json.loads((tmp_path / "good.json").read_text())["candidate_kind"] == "checkpoint"
    code, out, _ = _gate(["--baseline", str(baseline), "--candidate", str(noisy), "--out", str(tmp_path / "cand-noisy"),
                          "--json", str(tmp_path / "noisy.json")], capsys)
    assert code == 1, out
    verdict = json.loads((tmp_path / "noisy.json").read_text())
    (check,) = [c for c in verdict["checks"] if c["metric"] == "mel_distance"]
    assert check["status"] == "regression" and check["candidate_mean"] > check["baseline_mean"] + 0.3


@pytest.mark.parametrize("command", [["gate"], ["baseline"], ["report"]])
def test_help_texts_render(command, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: bench" in capsys.readouterr().out
