"""Where a run's time goes: compute_s per result row, the store's new columns, the report's time tables.

* ``compute`` times the metric call and gives each value the call's seconds over the batch size;
  ``score_pair`` keeps it and records the alignment/resampling time (``prep_s``).
* ``results.compute_s`` and ``coded.timing`` are new columns: a writer adds them to an older file,
  a read-only store and the reports read an older file without them ("not recorded", never 0).
* The time totals' overhead ratio = wall / ((codec compute + metric compute) / cores), checked
  against a hand computation on a hand-made store.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.metrics.base import MetricSpec, compute
from bench.pipeline.scoring import score_pair
from bench.registry import METRICS
from bench.store import Store
from bench.types import CodedRow, ResultRow

RATE = 16000

# the tables as the first release of the results database created them (no compute_s, no timing)
OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_utc TEXT, manifest TEXT);
CREATE TABLE items (
  run_id TEXT, item_id TEXT, dataset TEXT, split TEXT, domain TEXT, speaker TEXT, track TEXT,
  duration_s REAL, transcript TEXT, extra TEXT, PRIMARY KEY (run_id, item_id));
CREATE TABLE coded (
  run_id TEXT, item_id TEXT, codec TEXT, op TEXT, nominal_kbps REAL, measured_kbps REAL,
  n_bytes INTEGER, encode_s REAL, decode_s REAL, audio_s REAL, status TEXT, error TEXT,
  cache_key TEXT, PRIMARY KEY (run_id, item_id, codec, op));
CREATE TABLE results (
  run_id TEXT, item_id TEXT, codec TEXT, op TEXT, metric TEXT, nominal_kbps REAL,
  measured_kbps REAL, value REAL, status TEXT, error TEXT, extra TEXT,
  PRIMARY KEY (run_id, item_id, codec, op, metric));
CREATE TABLE skipped (
  run_id TEXT, item_id TEXT, codec TEXT, op TEXT, metric TEXT, reason TEXT,
  PRIMARY KEY (run_id, item_id, codec, op, metric));
CREATE TABLE codec_info (run_id TEXT, codec TEXT, info TEXT, PRIMARY KEY (run_id, codec));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 440.0, 660.0, 1320.0), 1))
    return (0.2 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _item(item_id: str, duration_s: float) -> SimpleNamespace:
    return SimpleNamespace(id=item_id, dataset="hand", split="test", domain="speech", speaker=None, track=None,
                           duration_s=duration_s, transcript=None, extra={})


# --- compute_s on real metric calls -------------------------------------------------------------

def test_compute_times_the_call_and_splits_it_over_the_batch():
    """A metric that takes 60 ms per call: each of 4 items is charged about 15 ms, not 60 and not 0."""
    def slow(preds, target, **_):
        time.sleep(0.06)
        return torch.zeros(preds.shape[0])

    spec = MetricSpec(name="slow", fn=slow, higher_is_better=True, unit="", sample_rate_hz=None)
    x = torch.zeros(4, 100)
    values = compute(spec, x, x, sample_rate_hz=RATE)
    assert len({v.compute_s for v in values}) == 1
    assert 0.015 <= values[0].compute_s < 0.03


def test_a_failed_call_is_timed_and_a_call_that_never_ran_is_not():
    def broken(preds, target, **_):
        time.sleep(0.02)
        raise RuntimeError("backend crashed")

    spec = MetricSpec(name="broken", fn=broken, higher_is_better=True, unit="", sample_rate_hz=None)
    x = torch.zeros(2, 100)
    crashed = compute(spec, x, x, sample_rate_hz=RATE)
    assert crashed[0].error == "RuntimeError: backend crashed" and crashed[0].compute_s >= 0.01
    wrong_rate = compute(METRICS.get("pesq_wb"), x, x, sample_rate_hz=44100)
    assert wrong_rate[0].error and wrong_rate[0].compute_s is None


def test_score_pair_records_compute_and_prep_seconds():
    ref = _signal(RATE)
    deg = np.concatenate([np.zeros(25, np.float32), ref + 0.01 * _signal(RATE, 1)])[:RATE]
    names = ("si_sdr", "mel_distance", "lsd", "pesq_wb", "stoi")
    res = score_pair(ref, deg, RATE, [METRICS.get(n) for n in names])
    assert res.lag_samples == 25 and res.prep_s > 0
    for name in names:
        v = res.values[name]
        assert v.ok and v.compute_s is not None and 0 < v.compute_s < 30, name


def test_score_task_returns_compute_s_and_prep_s():
    from bench.pipeline.engine import score_task

    ref = _signal(RATE)
    out = score_task(ref[None], (ref + 0.01 * _signal(RATE, 2))[None], RATE, ["si_sdr", "stoi"],
                     SimpleNamespace(domain="speech", transcript=None), "xcorr")
    value, error, extra, compute_s = out["values"]["si_sdr"]
    assert error is None and value > 30 and extra["lag_samples"] == 0 and compute_s > 0
    assert out["prep_s"] > 0 and out["skipped"] == {}


# --- the store's new columns ----------------------------------------------------------------------

def test_rows_keep_compute_s_and_timing(tmp_path):
    with Store(tmp_path / "results.sqlite") as store:
        store.put_coded("r", CodedRow("a", "opus", "6", 6.0, 6.1, 760, 0.02, 0.01, 1.0, timing="per item"))
        store.put_results("r", [ResultRow("a", "opus", "6", "si_sdr", 6.0, 6.1, 12.5, compute_s=0.003),
                                ResultRow("a", "opus", "6", "lsd", 6.0, 6.1, float("nan"), "failed", "x")])
        results = store.frame("results", "r").set_index("metric")
        coded = store.frame("coded", "r")
    assert results.loc["si_sdr", "compute_s"] == pytest.approx(0.003)
    assert math.isnan(results.loc["lsd", "compute_s"])
    assert coded["timing"].tolist() == ["per item"]


def _old_database(path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.execute("INSERT INTO runs VALUES ('old', '2024-01-01T00:00:00Z', ?)", (json.dumps({"seed": 0}),))
    conn.execute("INSERT INTO items VALUES ('old','a','hand','test','speech',NULL,NULL,2.0,NULL,'{}')")
    conn.execute("INSERT INTO coded VALUES ('old','a','opus','6',6,6.1,1525,0.04,0.02,2.0,'ok',NULL,'k')")
    conn.execute("INSERT INTO results VALUES ('old','a','opus','6','si_sdr',6,6.1,11.0,'ok',NULL,'{}')")
    conn.commit()
    conn.close()


def _columns(path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_an_old_database_opens_read_only_without_the_new_columns(tmp_path):
    from bench.reports import report as rep
    from bench.reports.load import load_run

    db = tmp_path / "results.sqlite"
    _old_database(db)
    with Store(db, readonly=True) as store:
        results = store.frame("results", "old")
        assert math.isnan(results["compute_s"].iloc[0]) and store.frame("coded", "old")["timing"].iloc[0] is None
    assert "compute_s" not in _columns(db, "results")  # a reader changes nothing on disk
    report = rep.build(load_run(tmp_path), n_boot=20)
    metric_rows = rep.time_metric_rows(report)
    assert metric_rows == [{"metric": "si_sdr", "compute s": "not recorded", "s per audio s": "not recorded",
                            "rows timed": "0/1"}]
    totals = {r["quantity"]: r["value"] for r in rep.time_total_rows(report)}
    assert totals["metric compute s"] == totals["overhead ratio"] == totals["wall time s"] == "not recorded"
    assert totals["codec compute (encode + decode) s"] == "0.0600"
    md = rep.write_markdown(report, tmp_path / "rep").read_text()
    assert "### Where the run's time went" in md and "not recorded" in md


def test_an_old_database_opened_for_writing_gains_the_columns(tmp_path):
    db = tmp_path / "results.sqlite"
    _old_database(db)
    with Store(db) as store:
        store.put_results("old", [ResultRow("a", "opus", "6", "lsd", 6.0, 6.1, 2.5, compute_s=0.004)])
        store.put_coded("old", CodedRow("b", "opus", "6", 6.0, 6.0, 1500, 0.05, 0.03, 2.0, timing="per item"))
        version = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert _columns(db, "results")[-1] == "compute_s" and _columns(db, "coded")[-1] == "timing"
    assert version == "3"
    with Store(db, readonly=True) as store:
        r = store.frame("results", "old").set_index("metric")
        c = store.frame("coded", "old").set_index("item_id")
    assert math.isnan(r.loc["si_sdr", "compute_s"]) and r.loc["lsd", "compute_s"] == pytest.approx(0.004)
    assert r.loc["si_sdr", "value"] == 11.0 and r.loc["lsd", "value"] == 2.5
    assert not isinstance(c.loc["a", "timing"], str) and c.loc["b", "timing"] == "per item"


# --- the report's time tables on a hand-made store --------------------------------------------------

ENC = {"6": 0.10, "12": 0.20, "24": 0.40}  # opus encode seconds per item at each op
DEC = {"6": 0.05, "12": 0.05, "24": 0.10}
COMPUTE = {"si_sdr": 0.001, "pesq_wb": 0.25}  # metric seconds per row
DURATIONS = {"a": 2.0, "b": 3.0}
WALL_S, CORES = 10.0, 4


def _hand_made_run(tmp_path, timed: bool = True):
    with Store(tmp_path / "results.sqlite") as store:
        manifest = {"timing": {"wall_s": WALL_S, "cores": CORES, "engine": "local", "workers": 4}} if timed else {}
        store.put_run("hand", manifest)
        store.put_items("hand", [_item(i, d) for i, d in DURATIONS.items()])
        for op in ("24", "6", "12"):  # written out of order on purpose
            for item_id, dur in DURATIONS.items():
                store.put_coded("hand", CodedRow(item_id, "opus", op, float(op), float(op), 100, ENC[op], DEC[op],
                                                 dur, timing="batch of 2, split by duration"))
                store.put_results("hand", [ResultRow(item_id, "opus", op, m, float(op), float(op), 1.0,
                                                     compute_s=s if timed else None) for m, s in COMPUTE.items()])
    return tmp_path


def test_time_tables_and_the_overhead_ratio_on_a_hand_made_store(tmp_path):
    from bench.reports import report as rep
    from bench.reports import tables
    from bench.reports.load import load_run

    data = load_run(_hand_made_run(tmp_path))
    codecs = tables.time_codecs(data)
    assert list(codecs["op"]) == ["6", "12", "24"]  # by nominal kbps as a number, not as text
    row = codecs.set_index("op").loc["12"]
    assert row["encode_s"] == pytest.approx(2 * 0.20) and row["decode_s"] == pytest.approx(2 * 0.05)
    assert row["encode_rtf"] == pytest.approx(0.40 / 5.0) and row["timing"] == "batch of 2, split by duration"
    metrics = tables.time_metrics(data).set_index("metric")
    assert metrics.loc["pesq_wb", "compute_s"] == pytest.approx(6 * 0.25)
    assert metrics.loc["pesq_wb", "s_per_audio_s"] == pytest.approx(6 * 0.25 / (3 * 5.0))
    totals = tables.time_totals(data).iloc[0]
    codec_s = 2 * sum(ENC.values()) + 2 * sum(DEC.values())  # 1.4 + 0.4 = 1.8
    metric_s = 6 * sum(COMPUTE.values())  # 1.506
    assert totals["codec_compute_s"] == pytest.approx(codec_s)
    assert totals["metric_compute_s"] == pytest.approx(metric_s)
    assert totals["overhead_ratio"] == pytest.approx(WALL_S / ((1.8 + 1.506) / CORES))  # 12.099...
    assert totals["overhead_ratio"] == pytest.approx(12.099213551119177)
    assert (totals["cores"], totals["engine"], totals["workers"]) == (CORES, "local", 4)

    report = rep.build(data, n_boot=20)
    shown = {r["quantity"]: r["value"] for r in rep.time_total_rows(report)}
    assert shown["overhead ratio"] == "12.1" and shown["engine / workers"] == "local / 4"
    payload = json.loads(rep.write_json(report, tmp_path / "rep").read_text())
    assert payload["time"]["totals"]["overhead_ratio"] == pytest.approx(12.099213551119177)
    assert [r["op"] for r in payload["time"]["codecs"]] == ["6", "12", "24"]
    rep.write_csv(report, tmp_path / "rep")
    assert (tmp_path / "rep" / "time_totals.csv").read_text().count("\n") == 2


def test_a_run_without_timing_says_not_recorded_never_zero(tmp_path):
    from bench.reports import report as rep
    from bench.reports import tables
    from bench.reports.load import load_run

    data = load_run(_hand_made_run(tmp_path, timed=False))
    totals = tables.time_totals(data).iloc[0]
    assert math.isnan(totals["metric_compute_s"]) and math.isnan(totals["overhead_ratio"])
    assert math.isnan(totals["wall_s"]) and totals["cores"] is None
    report = rep.build(data, n_boot=20)
    assert {r["compute s"] for r in rep.time_metric_rows(report)} == {"not recorded"}
    html_page = (__import__("bench.reports.html", fromlist=["write_html"])
                 .write_html(report, tmp_path / "html").read_text())
    assert "Where the run's time went</h3>" in html_page and "<td class=\"\">not recorded</td>" in html_page
