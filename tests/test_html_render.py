"""The standalone HTML report: files, tags, listening examples; a headless-chromium screenshot when available."""

import importlib.util
import re
from pathlib import Path

import pytest

from bench.reports.make import make_report
from bench.reports.synthetic import DEFAULT_CODECS, audio_source, make_items, make_run

ROOT = Path(__file__).resolve().parents[1]


def _small_run(run_dir: Path, **kw):
    """3 codecs, 7 items in 3 domains: enough for every section, quick to plot."""
    items = make_items(run_dir / "synth_audio", n_speakers=2, per_speaker=2, n_tracks=1, per_track=2, n_general=1)
    return make_run(run_dir, items=items, **kw)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    run = _small_run(tmp_path_factory.mktemp("html") / "run")
    written = make_report(run, formats=["html"], n_boot=200, audio_source=audio_source(run))
    return written["html"].parent


def test_html_is_standalone_with_plots_tables_and_players(report_dir):
    page = (report_dir / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    imgs = re.findall(r'<img src="([^"]+)"', page)
    audios = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    assert {"plots/rd_si_sdr.png", "plots/rd_mel_distance.png", "plots/rd_pesq_wb.png"} <= set(imgs)
    # every referenced file is inside the folder (relative, exists): the folder opens from disk
    for src in imgs + audios:
        assert not src.startswith(("/", "http")), src
        assert (report_dir / src).is_file(), src
    # reference + 3 codecs per listening item; items: one per domain and the worst per metric
    assert len(audios) >= 4 * 3 and len(audios) % 4 == 0
    assert "worst on si_sdr" in page and "example speech item" in page
    for section in ("BD-rate and BD-quality", "Paired comparisons", "Counts", "Efficiency", "Listening examples"):
        assert section in page
    assert "<script" not in page  # nothing to run; plain HTML + CSS


def test_listening_clips_are_short_16bit_wavs_with_spectrograms(report_dir):
    import soundfile as sf

    wavs = sorted((report_dir / "audio").glob("*.wav"))
    assert wavs
    for w in wavs:
        info = sf.info(str(w))
        assert info.subtype == "PCM_16" and info.duration <= 5.0 + 1e-6
        assert w.with_suffix(".png").stat().st_size > 2000


def test_missing_reconstructions_are_reported_not_fatal(tmp_path):
    run = make_run(tmp_path / "run", write_recon=False, codecs={k: DEFAULT_CODECS[k] for k in ("opus", "mp3")},
                   items=make_items(tmp_path / "run" / "synth_audio", n_speakers=1, per_speaker=2, n_tracks=0, n_general=1))
    source = audio_source(run)  # reconstructions were not written: every codec row is "not available"
    written = make_report(run, tmp_path / "rep", formats=["html"], n_boot=100, audio_source=source)
    page = written["html"].read_text()
    assert "no reconstruction found" in page
    n_players = page.count("<audio ")
    assert n_players >= 2  # the references are still there
    assert page.count('<span class="note">not available</span>') == 2 * n_players  # 2 codecs per item


def _render_script():
    spec = importlib.util.spec_from_file_location("render_report", ROOT / "scripts" / "render_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_chromium_screenshot_is_not_blank(report_dir, tmp_path):
    render = _render_script()
    if render.find_browser() is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    for width in (1280, 1920):  # a laptop and a desktop screen
        png = render.screenshot(report_dir / "index.html", tmp_path / f"shot{width}.png", width=width, height=6000)
        assert png.stat().st_size > 20_000
        assert render.ink_fraction(png) > 0.03  # text, tables and plots drawn, not an empty page
        assert _right_edge_is_empty(png, width), f"something runs past the right edge at {width} px"


def _right_edge_is_empty(png, width: int) -> bool:
    """Below the header and navigation bars, the rightmost 12 px are page background: nothing overflows."""
    import matplotlib.image as mpimg
    import numpy as np

    img = (mpimg.imread(str(png))[..., :3] * 255).astype(int)
    assert img.shape[1] == width
    body = img[140:, -12:]
    background = np.array([0xfa, 0xfb, 0xfc])
    return bool((np.abs(body - background).sum(axis=-1) <= 6).all())


def test_listening_table_keeps_its_width_whatever_the_metric_count(report_dir):
    """Scores share one cell: five columns, however many metrics the run scored."""
    page = (report_dir / "index.html").read_text()
    tables = re.findall(r'<table class="listen">(.*?)</table>', page, flags=re.S)
    assert tables
    for t in tables:
        head = re.search(r"<tr>(.*?)</tr>", t).group(1)
        assert re.findall(r"<th>(.*?)</th>", head) == ["version", "kbps", "scores", "listen", "spectrogram"]


def test_rd_figures_are_at_most_two_panels_wide(report_dir):
    """Three domains make a 2 x 2 grid: every panel drawn at one size, at 1:1 on a 1280 px screen."""
    import matplotlib.image as mpimg

    for png in (report_dir / "plots").glob("rd_*.png"):
        assert mpimg.imread(str(png)).shape[1] <= 1200, png.name


def test_single_file_report_embeds_every_image_and_clip(tmp_path):
    run = _small_run(tmp_path / "run")
    written = make_report(run, tmp_path / "rep", formats=["html"], n_boot=100, audio_source=audio_source(run),
                          single_file=True)
    single = written["html"]
    assert single.name == "report.html" and (tmp_path / "rep" / "index.html").is_file()
    page = single.read_text()
    srcs = re.findall(r'<(?:img|audio)\b[^>]*?\ssrc="([^"]+)"', page)
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert any(s.startswith("data:audio/wav;base64,") for s in srcs)
    assert any(s.startswith("data:image/png;base64,") for s in srcs)
    import base64

    first_png = next(s for s in srcs if s.startswith("data:image/png"))
    assert base64.b64decode(first_png.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_real_run_plays_the_runners_reconstructions(tmp_path):
    """The default audio source: the prepared references and the decodes, both from the run's cache."""
    import numpy as np
    import soundfile as sf

    from bench.pipeline.run import run_benchmark
    from bench.types import RunConfig

    clips = tmp_path / "clips"
    clips.mkdir()
    sr = 16000
    for k, f0 in enumerate([220.0, 330.0]):
        t = np.arange(int(1.0 * sr)) / sr
        sf.write(clips / f"tone{k}.wav", (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), sr)
    run = run_benchmark(RunConfig(codecs="opus@6,opus@12", dataset="folder", root=str(clips),
                                  dataset_options={"domain": "music"}, metrics="si_sdr", workers=1,
                                  progress=False, out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache")))
    written = make_report(run, formats=["html"], n_boot=100)
    page = written["html"].read_text()
    assert "not available" not in page and page.count("<audio ") == 2 * len(re.findall(r"<table class=\"listen\">", page))
    ref_clip = next((written["html"].parent / "audio").glob("*reference.wav"))
    x, rate = sf.read(str(ref_clip))
    assert rate == sr and 0.25 < np.max(np.abs(x)) < 0.35  # the tone as the run coded it (no loudness change)
