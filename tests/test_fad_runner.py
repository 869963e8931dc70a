"""FAD end to end: run (pcm16 and opus on a small folder), store, resume, report, gate; missing and changed weights.

The embedding model is a random-init EnCodec from a tiny config saved with save_pretrained; nothing is
downloaded. The folder mixes two domains and two sample rates, so every kind of stratum appears.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.cli import main as bench_main
from bench.pipeline.run import run_benchmark
from bench.store import Store
from bench.types import RunConfig

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from test_fad import tiny_encodec  # noqa: E402

STRATA = {"folder/all", "folder/general", "folder/music", "folder/all/16000Hz", "folder/all/24000Hz"}


def _clips(root: Path) -> Path:
    """Four music clips at 24 kHz and four general ones at 16 kHz, 1 s each, of different content."""
    rng = np.random.default_rng(0)
    for domain, rate in (("music", 24_000), ("general", 16_000)):
        (root / domain).mkdir(parents=True)
        t = np.arange(rate) / rate
        for k in range(4):
            f0 = 110.0 * (k + 2)
            x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * np.exp(-t * (k + 1))
            x = 0.3 * x / np.abs(x).max() + 0.01 * (k + 1) * rng.normal(size=t.size)
            sf.write(str(root / domain / f"clip{k}.wav"), x.astype(np.float32), rate)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fad")
    mp = pytest.MonkeyPatch()
    weights = tiny_encodec(root / "encodec")
    mp.setenv("BENCH_FAD_ENCODEC_MODEL", str(weights))
    cfg = RunConfig(codecs="pcm16,opus@6", dataset="folder", root=str(_clips(root / "clips")),
                    metrics="si_sdr,fad_encodec", workers=1, progress=False, out_dir=str(root / "run"),
                    cache_dir=str(root / "cache"))
    run = run_benchmark(cfg)
    # the embedding files right after the first run (other tests of this module add their own, in any order)
    files = sorted((root / "cache" / "embeddings").rglob("*.npy"))
    manifest = json.loads((run / "manifest.json").read_text())  # later tests resume into the run folder
    yield {"root": root, "cfg": cfg, "run": run, "weights": weights, "mp": mp, "files_after_run": files,
           "manifest_after_run": manifest}
    mp.undo()


def _set_rows(run: Path) -> dict[tuple[str, str, str], dict]:
    with Store(run / "results.sqlite", readonly=True) as store:
        return {(r["codec"], r["op"], r["stratum"]): r for r in store.set_results(store.resolve_run_id())}


def test_set_rows_are_stored_per_codec_point_and_stratum(setup):
    from bench.hub import weights_sha256

    rows = _set_rows(setup["run"])
    assert {k[2] for k in rows} == STRATA and {k[:2] for k in rows} == {("pcm16", "16bit"), ("opus", "6")}
    for (codec, op, stratum), r in rows.items():
        assert r["status"] == "ok", r["error"]
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
        assert r["n_items"] == {"folder/all": 8}.get(stratum, 4)
        assert r["extra"]["weights_sha256"] == weights_sha256(setup["weights"])
        assert r["extra"]["embedding_model"] == str(setup["weights"]) and r["extra"]["n_boot"] == 200
        assert r["extra"]["measured_kbps"] > 0
    for stratum in STRATA:  # 16-bit PCM is nearly transparent, 6 kbps Opus is not
        assert rows[("pcm16", "16bit", stratum)]["value"] < 0.1 * rows[("opus", "6", stratum)]["value"]
    assert rows[("opus", "6", "folder/music")]["extra"]["sample_rate_hz"] is None
    assert rows[("opus", "6", "folder/all/16000Hz")]["extra"]["sample_rate_hz"] == 16_000
    with sqlite3.connect(setup["run"] / "results.sqlite") as c:  # no per-item rows of a set-level metric
        assert c.execute("SELECT COUNT(*) FROM results WHERE metric='fad_encodec'").fetchone()[0] == 0
        assert c.execute("SELECT COUNT(*) FROM skipped WHERE metric='fad_encodec'").fetchone()[0] == 0
        assert c.execute("SELECT COUNT(*) FROM results WHERE metric='si_sdr'").fetchone()[0] == 16
    # each reference embedded once for both codecs, each reconstruction once
    assert len(setup["files_after_run"]) == 8 + 16
    assert setup["manifest_after_run"]["set_level"]["fad_encodec"]["clips_embedded"] == 24


def test_resume_embeds_nothing_and_keeps_every_value(setup):
    before = _set_rows(setup["run"])
    run_benchmark(setup["cfg"])
    manifest = json.loads((setup["run"] / "manifest.json").read_text())
    assert manifest["set_level"]["fad_encodec"]["clips_embedded"] == 0
    after = _set_rows(setup["run"])
    assert after.keys() == before.keys()
    for k in before:
        assert (after[k]["value"], after[k]["ci_low"], after[k]["fingerprint"]) == \
               (before[k]["value"], before[k]["ci_low"], before[k]["fingerprint"])


def test_report_shows_the_table_with_the_embedding_model(setup, tmp_path):
    from bench.hub import weights_sha256
    from bench.reports.make import make_report

    out = make_report(setup["run"], tmp_path / "report", with_audio=False, n_boot=200)
    md = out["md"].read_text()
    assert "## Set-level metrics" in md and "FAD (EnCodec 24 kHz encoder latents)" in md
    assert weights_sha256(setup["weights"])[:12] in md and "folder/all/16000Hz" in md
    page = out["html"].read_text()
    assert 'id="set-level"' in page and "EnCodec 24 kHz encoder latents" in page
    doc = json.loads(out["json"].read_text())
    assert len(doc["set_level"]) == 10 and all(r["value"] is not None for r in doc["set_level"])
    assert {r["weights_sha256"] for r in doc["set_level"]} == {weights_sha256(setup["weights"])}
    assert (tmp_path / "report" / "set_level.csv").is_file()
    assert "fad_encodec" not in {r["metric"] for r in doc["summary"]}  # not a per-item summary row


def _gate(args):
    try:
        return bench_main(["gate", *args])
    except SystemExit as exc:
        return exc.code


def test_gate_passes_the_same_run_and_fails_a_worse_fad(setup, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert bench_main(["baseline", "save", str(setup["run"]), "--out", str(baseline)]) == 0
    doc = json.loads(baseline.read_text())
    assert len(doc["set_entries"]) == 10 and doc["metrics"]["fad_encodec"]["higher_is_better"] is False
    verdict = tmp_path / "v.json"
    assert _gate(["--baseline", str(baseline), "--candidate", str(setup["run"]), "--json", str(verdict),
                  "--bootstrap", "200"]) == 0
    checks = [c for c in json.loads(verdict.read_text())["checks"] if c.get("set_level")]
    assert len(checks) == 10 and {c["status"] for c in checks} == {"pass"}
    # a candidate whose Opus FAD is three times worse, with its CI shifted alike
    worse = tmp_path / "worse"
    shutil.copytree(setup["run"], worse)
    with sqlite3.connect(worse / "results.sqlite") as c:
        c.execute("UPDATE set_results SET value=value*3, ci_low=ci_high*3, ci_high=ci_high*4 WHERE codec='opus'")
    capsys.readouterr()
    assert _gate(["--baseline", str(baseline), "--candidate", str(worse), "--json", str(verdict),
                  "--bootstrap", "200"]) == 1
    out = capsys.readouterr().out
    checks = [c for c in json.loads(verdict.read_text())["checks"] if c.get("set_level")]
    bad = {c["stratum"] for c in checks if c["status"] == "regression"}
    assert bad == STRATA and all(c["codec"] == "opus" for c in checks if c["status"] == "regression")
    assert "fad_encodec [folder/all]" in out and "do not overlap" in out
    # worse by more than the margin, but the intervals overlap: inconclusive (fails only with --strict)
    with sqlite3.connect(worse / "results.sqlite") as c:
        c.execute("UPDATE set_results SET ci_low=0 WHERE codec='opus'")
    args = ["--baseline", str(baseline), "--candidate", str(worse), "--json", str(verdict), "--bootstrap", "200",
            "--metrics", "fad_encodec"]
    assert _gate(args) == 0
    assert {c["status"] for c in json.loads(verdict.read_text())["checks"] if c.get("set_level")} >= {"inconclusive"}
    assert _gate(args + ["--strict"]) == 1


def test_missing_weights_give_nan_rows_with_the_reason(setup, tmp_path):
    setup["mp"].setenv("BENCH_FAD_ENCODEC_MODEL", str(tmp_path / "no-such-folder"))
    try:
        run = run_benchmark(RunConfig(codecs="pcm16", dataset="folder", root=str(setup["root"] / "clips"),
                                      metrics="fad_encodec", workers=1, progress=False, out_dir=str(tmp_path / "run"),
                                      cache_dir=setup["cfg"].cache_dir))
    finally:
        setup["mp"].setenv("BENCH_FAD_ENCODEC_MODEL", str(setup["weights"]))
    rows = _set_rows(run)
    assert {k[2] for k in rows} == STRATA
    for r in rows.values():
        assert r["status"] == "failed" and math.isnan(r["value"]) and math.isnan(r["ci_low"])
        assert "does not exist" in r["error"] and "bench weights fetch facebook/encodec_24khz" in r["error"]
        assert r["n_items"] in (4, 8)
    with sqlite3.connect(run / "results.sqlite") as c:  # a set-level metric alone still codes every pair
        assert c.execute("SELECT COUNT(*) FROM coded WHERE status='ok'").fetchone()[0] == 8


def test_other_weights_are_recomputed_never_served_from_the_cache(setup, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(setup["run"], run_dir)
    before = _set_rows(run_dir)
    other = tiny_encodec(tmp_path / "other", seed=7)
    setup["mp"].setenv("BENCH_FAD_ENCODEC_MODEL", str(other))
    try:
        from dataclasses import replace

        run_benchmark(replace(setup["cfg"], out_dir=str(run_dir)))
    finally:
        setup["mp"].setenv("BENCH_FAD_ENCODEC_MODEL", str(setup["weights"]))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["set_level"]["fad_encodec"]["clips_embedded"] == 24  # nothing of the first model reused
    after = _set_rows(run_dir)
    from bench.hub import weights_sha256

    assert {r["extra"]["weights_sha256"] for r in after.values()} == {weights_sha256(other)}
    assert all(after[k]["fingerprint"] != before[k]["fingerprint"] for k in before)
    assert all(after[k]["value"] != before[k]["value"] for k in before if k[0] == "opus")


def test_an_older_database_has_no_set_rows_for_readers(setup, tmp_path):
    from bench.reports.make import make_report

    old = tmp_path / "old"
    shutil.copytree(setup["run"], old)
    with sqlite3.connect(old / "results.sqlite") as c:
        c.execute("DROP TABLE set_results")
        c.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    with Store(old / "results.sqlite", readonly=True) as store:
        run_id = store.resolve_run_id()
        assert store.set_results(run_id) == [] and store.frame("set_results", run_id).empty
        assert "set_results" not in store.tables()  # a reader changes nothing on disk
    out = make_report(old, tmp_path / "report", with_audio=False, n_boot=100, formats=["md", "json"])
    assert "Set-level" not in out["md"].read_text() and json.loads(out["json"].read_text())["set_level"] == []
    with Store(old / "results.sqlite") as store:  # a writer adds the table
        assert "set_results" in store.tables() and store.set_results(run_id) == []
