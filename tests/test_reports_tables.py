"""Report tables and outputs on a synthetic run with a known ground truth (bench.reports.synthetic).

Ground truth: quality = 6 dB per doubling of the measured rate + a codec offset; the toy codec is
3 dB better than opus at equal rate (so it needs 2**(-3/6) of opus's rate: BD-rate -29.3 %) and
mp3 is 4 dB worse (BD-rate +58.7 %).
"""

import json

import pandas as pd
import pytest

from bench.cli import main as bench_main
from bench.errors import UserError
from bench.reports import report as rep
from bench.reports import tables
from bench.reports.load import display_codec, load_run, metric_info
from bench.reports.make import make_report
from bench.reports.synthetic import make_run

TOY = "toy:/ckpts/toy-v1.safetensors"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("synth") / "run", write_recon=False)


@pytest.fixture(scope="module")
def built(run_dir):
    return rep.build(load_run(run_dir), n_boot=300)


def test_summary_has_cis_counts_and_marks_different_item_sets(built):
    s = built.summary
    all_si = s[(s["domain"] == "all") & (s["metric"] == "si_sdr")]
    assert len(all_si) == 12  # 5 opus + 4 toy + 3 mp3 operating points
    assert (all_si["ci_lo"] < all_si["mean"]).all() and (all_si["mean"] < all_si["ci_hi"]).all()
    failed_row = all_si[(all_si["codec"] == TOY) & (all_si["op"] == "1")].iloc[0]
    assert failed_row["n_failed"] == 1 and failed_row["n_items"] == 21 and not failed_row["same_items"]
    assert all_si[all_si["codec"] == "opus"]["same_items"].all()
    # pesq applies to speech only: one block ("all" = the speech items), not applicable elsewhere
    pesq = s[s["metric"] == "pesq_wb"]
    assert set(pesq["domain"]) == {"all"} and (pesq["n_items"] == 12).all() and (pesq["n_not_applicable"] == 10).all()
    # per-domain blocks for metrics scored in several domains
    assert {"all", "speech", "music", "general"} <= set(s[s["metric"] == "si_sdr"]["domain"])
    # measured kbps comes from bytes / seconds of the coded table
    opus6 = all_si[(all_si["codec"] == "opus") & (all_si["op"] == "6")].iloc[0]
    assert opus6["nominal_kbps"] == 6.0 and opus6["measured_kbps"] == pytest.approx(6.18, rel=0.03)


def test_bd_rates_recover_the_ground_truth(built):
    bd = built.bd[(built.bd["domain"] == "all") & (built.bd["metric"] == "si_sdr")].set_index("codec")
    assert built.reference == "opus"
    assert bd.loc[TOY, "bd_rate_pct"] == pytest.approx((2 ** -0.5 - 1) * 100, abs=1.5)
    assert bd.loc["mp3", "bd_rate_pct"] == pytest.approx((2 ** (4 / 6) - 1) * 100, abs=2.0)
    assert bd.loc[TOY, "bd_quality"] == pytest.approx(3.0, abs=0.4)
    assert bd.loc["mp3", "bd_quality"] == pytest.approx(-4.0, abs=0.4)


def test_paired_comparisons_with_holm(built):
    p = built.paired
    assert len(p) and (p["p_holm"] >= p["p_value"] - 1e-12).all()
    toy = p[(p["codec"] == TOY) & (p["metric"] == "si_sdr") & (p["op"] == "4")].iloc[0]
    assert toy["ref_op"] == "6" and toy["verdict"] == "better" and toy["mean_diff"] > 2.0
    mp3 = p[(p["codec"] == "mp3") & (p["metric"] == "mel_distance") & (p["op"] == "16")].iloc[0]
    assert mp3["ref_op"] == "16" and mp3["verdict"] == "worse"  # higher distance = worse
    assert set(p["verdict"]) <= {"better", "worse", "no significant difference"}


def test_counts_and_efficiency(built):
    c = built.counts.set_index(["metric", "codec", "op"])
    row = c.loc[("si_sdr", TOY, "1")]
    assert (row["scored"], row["failed"], row["not_applicable"], row["missing"]) == (21, 1, 0, 0)
    assert "decoder produced silence (x1)" in row["failure_reasons"]
    pesq = c.loc[("pesq_wb", "opus", "6")]
    assert (pesq["scored"], pesq["not_applicable"]) == (12, 10)
    assert "speech only" in pesq["not_applicable_reasons"]
    opus_ops = list(built.counts[(built.counts["metric"] == "si_sdr") & (built.counts["codec"] == "opus")]["op"])
    assert opus_ops == ["6", "8", "12", "16", "24"]  # by rate, not as text ("12" < "6")
    e = built.efficiency.set_index(["codec", "op"])
    assert e.loc[(TOY, "1"), "parameters"] == 2_500_000
    assert e.loc[(TOY, "1"), "encode_rtf"] == pytest.approx(0.3)
    assert e.loc[("opus", "6"), "decode_rtf"] == pytest.approx(0.01)
    assert e.loc[(TOY, "1"), "peak_memory_mb"] == pytest.approx(310.0)


def test_reference_choice(built, run_dir):
    data = load_run(run_dir)
    assert tables.resolve_reference(data, "mp3") == "mp3"
    assert tables.resolve_reference(data, "toy") == TOY  # family name
    assert tables.resolve_reference(data, "toy:toy-v1") == TOY  # display label
    with pytest.raises(UserError, match="did you mean|Did you mean"):
        tables.resolve_reference(data, "opsu")


def test_written_outputs(run_dir, tmp_path):
    out = tmp_path / "rep"
    written = make_report(run_dir, out, formats=["md", "csv", "json"], n_boot=200, with_audio=False)
    for name in ("summary.csv", "bd.csv", "paired.csv", "counts.csv", "efficiency.csv", "report.md", "report.json"):
        assert (out / name).stat().st_size > 100, name
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == ["rd_mel_distance.png", "rd_pesq_wb.png", "rd_si_sdr.png"]
    assert all(p.stat().st_size > 10_000 for p in (out / "plots").glob("*.png"))
    assert "html" not in written
    csv = pd.read_csv(out / "summary.csv")
    assert {"measured_kbps", "nominal_kbps", "ci_lo", "ci_hi", "same_items"} <= set(csv.columns)
    doc = json.loads((out / "report.json").read_text())
    assert doc["reference"] == "opus" and doc["metric_directions"]["mel_distance"] == "lower"
    assert any(r["bd_rate_pct"] is not None for r in doc["bd"])
    md = (out / "report.md").read_text()
    assert "![R-D si\\_sdr](plots/rd_si_sdr.png)" in md and "†" in md and "BD-rate" in md


def _exit_code(*argv: str) -> int:
    """``bench ARGV`` in-process; an argparse error (SystemExit) counts as its exit code."""
    try:
        return bench_main(list(argv))
    except SystemExit as exc:
        return int(exc.code)


def test_cli_report_and_errors(run_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert _exit_code("report", str(run_dir), "--format", "csv", "--out", str(out), "--bootstrap", "100",
                      "--reference", "mp3") == 0
    assert (out / "bd.csv").exists() and not (out / "report.md").exists()
    assert set(pd.read_csv(out / "bd.csv")["reference"]) == {"mp3"}
    assert _exit_code("report", str(run_dir), "--format", "pdf", "--out", str(out)) == 2
    assert "unknown pdf" in capsys.readouterr().err
    assert _exit_code("report", str(tmp_path / "nothing-here")) == 2
    err = capsys.readouterr().err
    assert "nothing-here" in err and ("no such" in err or "no results.sqlite" in err)


def test_metric_direction_sources():
    assert metric_info("x", {"metrics": {"x": {"higher_is_better": False, "unit": "u"}}}).direction_source == "manifest"
    guess = metric_info("some_new_distance")
    assert guess.direction_source == "guess" and not guess.higher_is_better
    assert display_codec("dac:/a/b/model.safetensors") == "dac:model" and display_codec("opus") == "opus"
    assert rep.fmt(float("nan")) == "–"
    assert rep.fmt(12.345) == "12.3" and rep.fmt(0.001234) == "0.00123" and rep.fmt(3) == "3"
