"""The embedded demo set: generated offline, deterministic to the byte, cached atomically."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from bench.datasets.demo import DEMO_ITEMS, demo_dir, ensure_demo
from bench.errors import UserError
from bench.registry import DATASETS


def _hashes(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.wav"))}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    ensure_demo(root)
    return root


def test_items_shape_domains_and_transcripts(demo_root):
    items = list(DATASETS.get("demo").items("test", demo_root))
    assert [it.id for it in items] == [s.id for s in DEMO_ITEMS]
    assert len(items) == 6
    assert {it.domain for it in items} == {"speech", "music", "general"}
    for it in items:
        info = sf.info(it.path)
        assert info.channels == 1 and info.subtype == "PCM_16"
        assert info.samplerate in (24000, 44100)
        assert 5.0 <= info.duration <= 8.0, (it.id, info.duration)
        x, _ = sf.read(it.path)
        assert 0.5 < np.max(np.abs(x)) < 0.75  # normalised, not clipped
        assert np.sqrt(np.mean(x ** 2)) > 0.01  # not (near) silence
        if it.domain == "speech":
            assert it.transcript and len(it.transcript.split()) > 10
            assert info.samplerate == 24000
        else:
            assert it.transcript is None


def test_speech_voices_differ(demo_root):
    speech = [it for it in DATASETS.get("demo").items("test", demo_root) if it.domain == "speech"]
    assert len({it.speaker for it in speech}) == len(speech) >= 2


def test_same_bytes_every_time_and_regenerates_missing(demo_root, tmp_path):
    first = _hashes(demo_dir(demo_root))
    manifest = json.loads((demo_dir(demo_root) / "manifest.json").read_text())
    assert manifest["files"] == first and "not a benchmark" in manifest["note"]
    # a fresh generation elsewhere gives identical bytes
    ensure_demo(tmp_path)
    assert _hashes(demo_dir(tmp_path)) == first
    # a deleted file is regenerated alone, identical (eSpeak runs in a fresh process per utterance)
    for name in ("speech-en-gb-female.wav", "music-drums.wav"):
        (demo_dir(tmp_path) / name).unlink()
    ensure_demo(tmp_path)
    assert _hashes(demo_dir(tmp_path)) == first
    assert not [p for p in demo_dir(tmp_path).iterdir() if ".tmp" in p.name]


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "c"))
    assert demo_dir() == tmp_path / "c" / "demo-v1"


def test_bad_split():
    with pytest.raises(UserError, match="no split 'train'. Known: test"):
        list(DATASETS.get("demo").items("train"))
