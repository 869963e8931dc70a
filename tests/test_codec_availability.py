"""``--codecs all`` leaves out codecs without weights or backend and says why; ``bench ls codecs`` shows both."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bench.codecs.base import SkippedCodec, codec_availability, select_codecs
from bench.registry import CODECS


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    CODECS.discover()


class _NeedsBackend:
    """A registered codec whose backend distribution is not installed."""

    in_all = True
    fingerprint_packages = ("numpy", "zz-not-a-distribution")

    def __init__(self, checkpoint: str | None = None) -> None:
        self.name = "zz-nobackend"


def test_all_records_codecs_without_weights_with_the_fetch_command(empty_cache: None) -> None:
    skipped: list[SkippedCodec] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a list to fill, nothing is warned
        labels = [s.label for s in select_codecs("all", skipped=skipped)]
    reasons = {s.name: s.reason for s in skipped}
    assert "opus@12" in labels and not any(lab.startswith("encodec") for lab in labels)
    assert "weights 'facebook/encodec_24khz' not in the local Hugging Face cache" in reasons["encodec"]
    assert "bench weights fetch kyutai/mimi" in reasons["mimi"]
    assert len(skipped) == len({s.name for s in skipped}), "one reason per codec"
    assert str(SkippedCodec("a", "b")) == "a (b)"


def test_all_skips_a_codec_whose_extra_is_missing(empty_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CODECS._entries, "zz-nobackend", _NeedsBackend)
    availability = codec_availability("zz-nobackend")
    assert not availability.ok and "zz-not-a-distribution" in (availability.backend or "")
    skipped: list[SkippedCodec] = []
    labels = [s.label for s in select_codecs("all", skipped=skipped)]
    assert not any(lab.startswith("zz-") for lab in labels)
    assert any(s.name == "zz-nobackend" and "extra not installed" in s.reason for s in skipped)
    with pytest.warns(UserWarning, match="zz-nobackend"):
        select_codecs("all")


def test_available_codecs_report_yes(empty_cache: None) -> None:
    assert codec_availability("opus").ok and codec_availability("pcm16").reason == ""
    assert codec_availability("encodec").backend is None or "transformers" in str(codec_availability("encodec").backend)


def test_plan_run_says_which_codecs_all_skipped(empty_cache: None, tmp_path: Path) -> None:
    from bench.pipeline.run import plan_run
    from bench.types import RunConfig

    said: list[str] = []
    try:
        plan_run(RunConfig(codecs="all", dataset="demo", limit=1, out_dir=str(tmp_path / "run")), say=said.append)
    except Exception as exc:  # noqa: BLE001 - the demo set may need an extra; the note comes before it
        pytest.skip(f"demo dataset unavailable here: {exc}")
    notes = [line for line in said if line.startswith("note: --codecs all skipped: ")]
    assert len(notes) == 1 and "encodec (weights 'facebook/encodec_24khz'" in notes[0]


def test_ls_codecs_shows_backend_weights_and_sweep(empty_cache: None, capsys: pytest.CaptureFixture[str]) -> None:
    import bench.cli as cli

    assert cli.main(["ls", "codecs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "backend yes; weights yes" in lines["opus"] and "sweep 6 8 12 16 24" in lines["opus"]
    assert "unavailable" in lines["mimi"] and "weights no (weights 'kyutai/mimi'" in lines["mimi"]
