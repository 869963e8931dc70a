"""Reports say things in words: too few clusters, better/worse by direction, every n/a reason, partial runs,
and the paper tables (table.tex, wide.csv) are well formed."""

from __future__ import annotations

import json
import re
import sqlite3

import pandas as pd

from bench.reports import stats, tables
from bench.reports.load import load_run
from bench.reports.make import make_report
from bench.reports.synthetic import make_items, make_run


def test_min_attainable_p_and_wording() -> None:
    assert stats.min_attainable_p(3) == 0.25
    assert stats.min_attainable_p(5) == 0.0625
    assert stats.min_attainable_p(6) < 0.05
    # the bound is real: the most extreme data with n=5 gives exactly it
    assert abs(stats.signed_rank_p([1.0, 2.0, 3.0, 4.0, 5.0]) - stats.min_attainable_p(5)) < 1e-12
    assert stats.too_few_text(3, 0.05) == "too few clusters (n=3) for this test to reach p<0.05"
    assert stats.too_few_text(8, 0.05) == ""


def _few_items(tmp_path, n_speakers: int):  # noqa: ANN001, ANN202
    return make_items(tmp_path / "a", n_speakers=n_speakers, per_speaker=2, n_tracks=0, n_general=0, seed=0)


def test_too_few_clusters_said_in_words(tmp_path) -> None:  # noqa: ANN001
    run = make_run(tmp_path / "r", items=_few_items(tmp_path, 3), with_failures=False, write_recon=False)
    out = make_report(run, tmp_path / "out", with_audio=False, n_boot=50, formats=["md", "json"])
    rep = json.loads(out["json"].read_text())
    assert rep["paired"], "expected paired comparisons"
    for row in rep["paired"]:
        assert row["n_test"] <= 3
        assert row["verdict"].startswith("too few clusters (n=")
        assert row["p_holm"] is None
    assert "too few clusters (n=" in out["md"].read_text()


def test_better_worse_follow_direction(tmp_path) -> None:  # noqa: ANN001
    codecs = {"opus": ({"6": 6.0, "12": 12.0}, 0.0, 1.0), "toy:x": ({"6": 6.0, "12": 12.0}, 0.0, 1.0)}
    run = make_run(tmp_path / "r", codecs=codecs, degrade={"toy:x": 6.0}, with_failures=False, write_recon=False)
    data = load_run(run)
    s = tables.summary(data, n_boot=50)
    paired = tables.paired_table(data, s, "opus")
    assert len(paired)
    for r in paired.itertuples():
        if r.verdict in ("better", "worse"):
            oriented = r.mean_diff if r.higher_is_better else -r.mean_diff
            assert (r.verdict == "better") == (oriented > 0)
    # the degraded codec is worse on a higher-is-better metric it scores
    hib = paired[paired["higher_is_better"]]
    assert (hib["verdict"] == "worse").any()


def test_all_not_applicable_reasons_kept(tmp_path) -> None:  # noqa: ANN001
    run = make_run(tmp_path / "r", with_failures=False, write_recon=False)
    with sqlite3.connect(run / "results.sqlite") as db:
        rows = db.execute("SELECT rowid, reason FROM skipped").fetchall()
        assert len(rows) >= 3
        db.execute("UPDATE skipped SET reason = 'other reason' WHERE rowid = ?", (rows[0][0],))
    data = load_run(run)
    counts = tables.counts_table(data)
    joined = " ".join(counts["not_applicable_reasons"])
    assert "other reason (x1)" in joined
    assert re.search(r"\(x\d+\); other reason|other reason \(x1\); ", joined)


def _stop_early(run) -> None:  # noqa: ANN001
    """Delete every row of one item, as if the run stopped before it."""
    with sqlite3.connect(run / "results.sqlite") as db:
        (item,) = db.execute("SELECT item_id FROM items ORDER BY item_id LIMIT 1").fetchone()
        for t in ("results", "skipped", "coded"):
            db.execute(f"DELETE FROM {t} WHERE item_id = ?", (item,))  # noqa: S608


def test_partial_banner(tmp_path) -> None:  # noqa: ANN001
    complete = make_run(tmp_path / "full", write_recon=False)
    partial = make_run(tmp_path / "part", write_recon=False)
    _stop_early(partial)
    for run, expect in ((complete, False), (partial, True)):
        out = make_report(run, tmp_path / f"out_{run.name}", with_audio=False, n_boot=50, paper_tables=True)
        md, page = out["md"].read_text(), out["html"].read_text()
        rep = json.loads(out["json"].read_text())
        summary_csv = pd.read_csv(out["csv:summary"])
        tex = out["paper:table.tex"].read_text()
        assert ("partial run:" in md) is expect
        assert ("partial run:" in page) is expect
        assert bool(rep["partial_run"]) is expect and rep["progress"]["partial"] is expect
        assert ("partial_run" in summary_csv.columns) is expect
        assert ("partial run:" in tex) is expect
        if expect:
            p = rep["progress"]
            assert p["items_done"] == p["items_planned"] - 1
            assert md.splitlines()[0].startswith("> **partial run:")
            assert f"{p['items_done']} of {p['items_planned']} items done" in md


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{}" and i and text[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_table_tex_and_wide_csv(tmp_path) -> None:  # noqa: ANN001
    codecs = {"opus": ({"12": 12.0, "6": 6.0, "24": 24.0}, 0.0, 1.0),
              "my_codec:x": ({"3": 3.0, "1.5": 1.5}, 1.0, 1.0)}
    run = make_run(tmp_path / "r", codecs=codecs, write_recon=False)
    out = make_report(run, tmp_path / "out", with_audio=False, n_boot=50, formats=["csv"], paper_tables=True)
    tex = out["paper:table.tex"].read_text()
    assert _balanced(tex)
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 1
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert re.search(r"(?<!\\)_", tex.replace(r"\_", "")) is None  # every underscore escaped
    assert r"my\_codec" in tex
    body = tex[tex.index(r"\midrule"):tex.index(r"\bottomrule")].splitlines()[1:]
    assert len(body) == 5
    opus_ops = [line.split(" & ")[1] for line in body if line.startswith("opus")]
    assert opus_ops == ["6", "12", "24"]  # by kbps as a number, not as text
    n_cols = tex.split("\\begin{tabular}{", 1)[1].split("}", 1)[0]
    assert all(line.count(" & ") == len(n_cols) - 1 for line in body)
    wide = pd.read_csv(out["paper:wide.csv"])
    assert len(wide) == 5
    data = load_run(run)
    for m in data.metrics:
        if (tables.summary(data, n_boot=20)["metric"] == m).any():
            assert {f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high", f"{m}_n"} <= set(wide.columns)
