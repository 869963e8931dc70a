"""``--codecs`` selection: all, names, ``name@op``, op globs, name globs, and helpful errors."""

from __future__ import annotations

import warnings

import pytest

from bench.codecs.base import select_codecs
from bench.registry import CODECS, UnknownNameError

OPUS_OPS = {"6", "8", "12", "16", "24"}


def _labels(spec: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "all" and globs skip unavailable codecs with a warning
        return [s.label for s in select_codecs(spec)]


def _available(name: str) -> bool:
    try:
        CODECS.get(name)().spec
    except Exception:  # noqa: BLE001 - e.g. a neural codec whose checkpoint is not installed
        return False
    return True


def test_all_selects_the_sweep_of_every_available_codec_in_all():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unavailable codecs are skipped with a warning
        selections = select_codecs("all")
    pairs = {(s.key, s.op.name) for s in selections}
    assert len(pairs) == len(selections), "a (codec, point) pair was selected twice"
    for name in CODECS.names():
        if getattr(CODECS.get(name), "in_all", True) and _available(name):
            codec = CODECS.get(name)()
            sweep = codec.spec.sweep or [p.name for p in codec.spec.operating_points]
            assert {(name, op) for op in sweep} == {pair for pair in pairs if pair[0] == name}
    assert {("opus", op) for op in OPUS_OPS} <= pairs
    assert {("mp3", "16"), ("mp3", "64"), ("pcm16", "16bit")} <= pairs


class _Unavailable:
    """A registered codec whose spec fails, as a neural codec without its checkpoint does."""

    in_all = True

    def __init__(self, checkpoint=None):
        self.name = "zz-unavailable"

    @property
    def spec(self):
        raise FileNotFoundError("zz-unavailable: checkpoint not installed")


def test_all_skips_an_unavailable_codec_with_a_warning_but_naming_it_fails(monkeypatch):
    CODECS.discover()
    monkeypatch.setitem(CODECS._entries, "zz-unavailable", _Unavailable)
    with pytest.warns(UserWarning, match="zz-unavailable"):
        labels = [s.label for s in select_codecs("all")]
    assert "opus@12" in labels and not any(lab.startswith("zz-") for lab in labels)
    with pytest.raises(FileNotFoundError, match="not installed"):
        select_codecs("zz-unavailable")


def test_glob_with_point_keeps_the_codecs_that_have_it():
    labels = _labels("*@16")
    assert "opus@16" in labels and "mp3@16" in labels
    assert not any(lab.startswith("pcm16") for lab in labels)


def test_name_selects_all_its_points_in_spec_order():
    selections = select_codecs("opus")
    assert [s.op.name for s in selections] == ["6", "8", "12", "16", "24"]
    assert {s.key for s in selections} == {"opus"}
    assert len({id(s.codec) for s in selections}) == 1, "one instance per codec, shared by its points"
    assert [s.op.nominal_kbps for s in selections] == [6.0, 8.0, 12.0, 16.0, 24.0]


def test_name_at_point():
    assert _labels("opus@12") == ["opus@12"]
    assert _labels("opus@12kbps") == ["opus@12"]
    assert _labels("pcm16@16bit") == ["pcm16@16bit"]


def test_point_glob():
    assert _labels("opus@1*") == ["opus@12", "opus@16"]
    assert _labels("opus@?") == ["opus@6", "opus@8"]


def test_name_glob():
    labels = _labels("op*")
    assert {lab.split("@")[0] for lab in labels} == {n for n in CODECS.names() if n.startswith("op")}
    assert {f"opus@{op}" for op in OPUS_OPS} <= set(labels)
    assert not any(lab.startswith(("mp3", "pcm16")) for lab in labels)


def test_comma_list_deduplicates_and_keeps_order():
    assert _labels("opus@12,mp3@32,opus@12,opus@6") == ["opus@12", "mp3@32", "opus@6"]
    assert _labels(" opus@24 , pcm16 ") == ["opus@24", "pcm16@16bit"]


def test_misspelt_name_gets_did_you_mean():
    with pytest.raises(UnknownNameError) as info:
        select_codecs("opsu")
    message = str(info.value)
    assert "Did you mean" in message and "'opus'" in message


def test_misspelt_name_inside_a_list():
    with pytest.raises(UnknownNameError, match="Did you mean 'mp3'"):
        select_codecs("opus@12,mp4")


def test_unknown_point_lists_the_points():
    with pytest.raises(UnknownNameError) as info:
        select_codecs("opus@13")
    message = str(info.value)
    assert "opus" in message and "'13'" in message
    for op in OPUS_OPS:
        assert op in message.split("Known:")[1]


def test_glob_matching_nothing():
    with pytest.raises(UnknownNameError, match="No codec matches"):
        select_codecs("zz*")
    with pytest.raises(UnknownNameError):
        select_codecs("opus@9*")


def test_empty_selection_is_an_error():
    with pytest.raises(UnknownNameError, match="selects nothing"):
        select_codecs(" , ")
