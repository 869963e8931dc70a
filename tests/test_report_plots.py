"""R-D figures for papers: panels by (domain, sample rate), one curve per checkpoint and mode, PNG+PDF+SVG."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bench.reports import plots, tables
from bench.reports.load import load_run
from bench.reports.synthetic import make_items, make_run


def test_curve_key_one_curve_per_checkpoint_and_mode():
    k = plots.curve_key
    assert k("eulerodec", "6k") == k("eulerodec", "6k-n4") == "eulerodec [6k]"
    assert k("eulerodec", "12k") == k("eulerodec", "12k-n4") == "eulerodec [12k]"
    assert k("eulerodec", "6k") != k("eulerodec", "12k")
    assert k("vrvq:/ck/a.pt", "L0.5") == k("vrvq:/ck/a.pt", "L2") == "vrvq:/ck/a.pt [vbr]"
    assert k("vrvq:/ck/a.pt", "n4") == k("vrvq:/ck/a.pt", "n8") == "vrvq:/ck/a.pt [cbr]"
    assert k("opus", "6") == k("opus", "24") == "opus"
    assert k("dac[small]", "n4") == "dac[small]"  # n<k> is a mode only for vrvq
    assert plots.curve_mode("eulerodec [6k]", "eulerodec") == "6k" and plots.curve_mode("opus", "opus") == ""


def _two_rate_run(tmp_path):
    """Speech at 24 kHz and music at 44.1 kHz (rates recorded in the items' metadata), plus music at 24 kHz."""
    items = make_items(tmp_path / "audio", n_speakers=3, per_speaker=2, n_tracks=3, per_track=2, n_general=0)
    for it in items:
        rate = 24000 if it.domain == "speech" or it.id.startswith("track2") else 44100
        it.extra = {"sample_rate_hz": rate}
    codecs = {"eulerodec": ({"6k-n2": 3.0, "6k": 6.0, "12k-n2": 6.0, "12k": 12.0}, 0.0, 1.0),
              "vrvq": ({"L0.5": 2.0, "L1": 4.0, "n2": 3.0, "n4": 6.0}, 1.0, 1.0),
              "opus": ({"6": 6.0, "12": 12.0}, -1.0, 1.0)}
    return make_run(tmp_path / "run", items=items, codecs=codecs, write_recon=False, with_failures=False)


@pytest.fixture(scope="module")
def two_rates(tmp_path_factory):
    data = load_run(_two_rate_run(tmp_path_factory.mktemp("rates")))
    return data, tables.summary(data, n_boot=100)


def test_item_rates_come_from_item_metadata(two_rates):
    data, _ = two_rates
    rates = plots.item_rates(data)
    assert rates["spk0-utt0"] == 24000 and rates["track0-seg0"] == 44100 and rates["track2-seg1"] == 24000


def test_panels_never_pool_two_rates(two_rates):
    data, summary = two_rates
    rates = plots.item_rates(data)
    panels = plots.rate_panels(summary, "si_sdr", data, n_boot=100)
    got = sorted((p.domain, p.rate, p.n_items) for p in panels)
    assert got == [("music", 24000, 2), ("music", 44100, 4), ("speech", 24000, 6)]
    res = data.results[data.results["metric"] == "si_sdr"]
    for p in panels:
        assert p.caption == f"{p.domain}, {p.rate / 1000:g} kHz, {p.n_items} items"
        assert not (set(p.rows["domain"]) - {"all", p.domain})
        # every point of the panel is the mean over items of that one rate and domain only
        row = p.rows[(p.rows["codec"] == "opus") & (p.rows["op"] == "6")].iloc[0]
        ids = {i for i, r in rates.items() if r == p.rate} & set(data.items.loc[data.items["domain"] == p.domain, "item_id"])
        want = res[(res["codec"] == "opus") & (res["op"] == "6") & res["item_id"].isin(ids)]["value"].mean()
        assert row["mean"] == pytest.approx(want) and row["n_items"] == len(ids)


def test_one_curve_per_checkpoint_and_mode(two_rates):
    data, summary = two_rates
    panel = plots.rate_panels(summary, "si_sdr", data)[-1]
    cs = plots.split_curves(panel.rows)
    assert sorted(cs) == ["eulerodec [12k]", "eulerodec [6k]", "opus", "vrvq [cbr]", "vrvq [vbr]"]
    assert sorted(p.op for p in cs["eulerodec [6k]"].points) == ["6k", "6k-n2"]
    assert sorted(p.op for p in cs["vrvq [vbr]"].points) == ["L0.5", "L1"]


def test_figures_are_written_as_png_pdf_and_svg_with_a_legend_per_panel(two_rates, tmp_path):
    import matplotlib.pyplot as plt

    data, summary = two_rates
    png = plots.plot_rd(summary, "si_sdr", tmp_path / "rd_si_sdr.png", unit="dB", data=data, n_boot=100)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    root = ET.parse(png.with_suffix(".svg")).getroot()
    assert root.tag.endswith("svg")
    svg = png.with_suffix(".svg").read_text()
    for text in ("SI-SDR (dB)", "speech, 24 kHz, 6 items", "music, 44.1 kHz, 4 items", "Pareto frontier"):
        assert text in svg, text
    assert "all items" not in svg
    assert plt.get_fignums() == []  # the figure was closed


def test_frontier_is_drawn_behind_the_curves(two_rates, monkeypatch, tmp_path):
    import matplotlib.figure

    data, summary = two_rates
    seen = {}
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **kw):
        for ax in fig.axes:
            for line in ax.get_lines():
                seen.setdefault(line.get_label(), set()).add(line.get_zorder())
        return orig(fig, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plots.plot_rd(summary, "si_sdr", tmp_path / "f.png", data=data, n_boot=100)
    curve_z = min(min(z) for lab, z in seen.items() if lab.startswith(("eulerodec", "vrvq", "opus")))
    assert max(seen["Pareto frontier"]) < curve_z


def test_spectrogram_has_axes_colour_bar_and_log_option(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    x = 0.5 * np.sin(2 * np.pi * 1000 * t)
    for log in (False, True):
        out = plots.plot_spectrogram(x, rate, tmp_path / f"s{log}.png", log_freq=log)
        assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 2000
    db, freqs, _ = plots.spectrogram_db(x, rate)
    assert abs(freqs[np.argmax(db.mean(axis=1))] - 1000) < 20 and db.max() == pytest.approx(-6.02, abs=1.0)  # half scale


def test_metric_titles_are_human():
    assert plots.metric_title("si_sdr", "dB") == "SI-SDR (dB)"
    assert plots.metric_title("mel_distance") == "Mel distance"
    assert plots.metric_title("pesq_wb", "MOS") == "PESQ (wideband) (MOS)"
    assert plots.metric_title("new_metric") == "new metric"
