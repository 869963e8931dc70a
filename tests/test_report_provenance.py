"""Reports name each codec with its checkpoint and say where it came from; a demo run says it is a smoke set.

Labels are checked against the shipped DAC card (its real weights hash), published weights (a
card named ``published:...`` and a hub default), and a user's file; then a real demo run's report
is checked in every format for the banner and the codec section.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.reports.provenance import CPU_MARK, CPU_NOTE, DEMO_BANNER, checkpoint_source, codec_label, is_in_repo

SHIPPED_DAC = Path(__file__).resolve().parents[1] / "bench" / "codecs" / "checkpoints" / "dac_small.json"


def _shipped_hash() -> str:
    return json.loads(SHIPPED_DAC.read_text())["weights_sha256"]


def test_shipped_checkpoint_is_labelled_with_its_config_and_marked_cpu_trained() -> None:
    info = {"checkpoint": None, "checkpoint_hash": _shipped_hash(), "parameters": 1244958}
    assert codec_label("dac", info) == f"dac[small]{CPU_MARK}"
    assert is_in_repo("dac", info)
    source = checkpoint_source("dac", info)
    assert "in-repo" in source and "2000 steps" in source and "CPU" in source and _shipped_hash()[:12] in source


def test_a_different_hash_is_not_taken_for_the_shipped_checkpoint() -> None:
    info = {"checkpoint": None, "checkpoint_hash": "0" * 64, "parameters": 1244958}
    assert not is_in_repo("dac", info)
    assert CPU_MARK not in codec_label("dac", info)


def test_published_and_user_checkpoints() -> None:
    published = {"checkpoint": "/hf/descript/dac_44khz", "checkpoint_hash": "ab" * 32,
                 "card": {"name": "published:dac_44khz"}}
    assert codec_label("dac:/hf/descript/dac_44khz", published) == "dac[published:dac_44khz]"
    assert checkpoint_source("dac:/hf/descript/dac_44khz", published).startswith("official release /hf/descript/dac_44khz")
    assert codec_label("encodec", {"checkpoint": None, "checkpoint_hash": "cd" * 32, "parameters": 14_000_000}) == "encodec[encodec_24khz]"
    assert "facebook/encodec_24khz" in checkpoint_source("encodec", {"checkpoint": None, "checkpoint_hash": "cd" * 32, "parameters": 14_000_000})
    user = {"checkpoint": "/runs/x/ckpt.safetensors", "checkpoint_hash": "ef" * 32}
    assert codec_label("dac:/runs/x/ckpt.safetensors", user) == "dac[ckpt]"
    assert checkpoint_source("dac:/runs/x/ckpt.safetensors", user).startswith("user checkpoint /runs/x/ckpt.safetensors")


def test_codecs_without_weights_keep_their_key() -> None:
    assert codec_label("opus", {"checkpoint": None, "checkpoint_hash": "none"}) == "opus"
    assert codec_label("pcm16", None) == "pcm16"
    assert checkpoint_source("opus", {"checkpoint_hash": "none"}) == "no learned weights"
    assert checkpoint_source("opus", {"checkpoint_hash": "libopus 1.6"}) == "no learned weights (libopus 1.6)"


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report folder of a small real demo run (pcm16 and opus@6, two items)."""
    from bench.pipeline.run import run_benchmark
    from bench.reports.make import make_report
    from bench.types import RunConfig

    tmp = tmp_path_factory.mktemp("prov")
    run = run_benchmark(RunConfig(codecs="pcm16,opus@6", dataset="demo", limit=2, metrics="si_sdr", workers=1,
                                  progress=False, out_dir=str(tmp / "run"), cache_dir=str(tmp / "cache")))
    out = tmp / "report"
    make_report(run, out, formats=["html", "md", "csv", "json"], n_boot=100, with_audio=False)
    return out


def test_demo_banner_tops_every_format(demo_report: Path) -> None:
    md = (demo_report / "report.md").read_text()
    assert md.splitlines()[0] == f"> **{DEMO_BANNER}**"
    html = (demo_report / "index.html").read_text()
    assert html.index(DEMO_BANNER) < html.index("<header>")
    assert json.loads((demo_report / "report.json").read_text())["banner"] == DEMO_BANNER
    for name in ("summary", "bd", "paired", "counts", "efficiency"):
        frame = pd.read_csv(demo_report / f"{name}.csv")
        assert list(frame.columns)[0] == "banner"
        assert (frame["banner"] == DEMO_BANNER).all()


def test_codec_section_lists_every_codec(demo_report: Path) -> None:
    md = (demo_report / "report.md").read_text()
    assert "## Codecs and checkpoints" in md and "no learned weights" in md
    assert CPU_NOTE not in md  # no in-repo checkpoint ran
    rows = json.loads((demo_report / "report.json").read_text())["codec_checkpoints"]
    assert {r["codec"] for r in rows} == {"pcm16", "opus"}
    assert 'id="codecs"' in (demo_report / "index.html").read_text()
