"""Helpers for the dataset tests: real audio from shared/audio (``shared_paths``), layouts, and a tiny `bench run`.

Not a test module (no ``test_`` prefix); the dataset tests import it.
"""

from __future__ import annotations

import math
import sqlite3
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from shared_paths import SHARED_AUDIO

SHARED = SHARED_AUDIO


def need_shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared audio not found at {SHARED} (BENCH_SHARED_DIR)")
    return SHARED


@lru_cache(maxsize=None)
def _librivox() -> tuple[tuple[np.ndarray, str], ...]:
    """(16 kHz mono utterance, transcript) pairs from the LibriVox fixture."""
    from bench.audio import load_audio, to_channels

    folder = need_shared() / "fixtures" / "speech-librivox-with-transcripts"
    out = []
    for wav in sorted(folder.glob("*.wav")):
        a = load_audio(wav)
        out.append((to_channels(a.samples, 1)[0], " ".join(wav.with_suffix(".txt").read_text().split())))
    return tuple(out)


def speech(index: int, sample_rate_hz: int, min_seconds: float = 0.0) -> tuple[np.ndarray, str]:
    """A real utterance resampled to ``sample_rate_hz`` (utterances concatenated up to ``min_seconds``)."""
    from bench.audio import resample

    utts = _librivox()
    x, text = utts[index % len(utts)]
    parts, k = [x], index
    while sum(len(p) for p in parts) < min_seconds * 16000:
        k += 1
        parts.append(utts[k % len(utts)][0])
    return resample(np.concatenate(parts)[None], 16000, sample_rate_hz)[0], text


@lru_cache(maxsize=None)
def music(song: str, seconds: float = 12.0, offset_s: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """(song stem, guitar stem) of a Frets on Fire track: stereo 44.1 kHz, ``seconds`` long."""
    from bench.audio import load_audio

    folder = need_shared() / "train" / "music" / "fretsonfire-muldjord" / song
    a = load_audio(folder / "song.ogg", start_s=offset_s, duration_s=seconds).samples
    b = load_audio(folder / "guitar.ogg", start_s=offset_s, duration_s=seconds).samples
    n = min(a.shape[1], b.shape[1])
    return a[:, :n], b[:, :n]


def general_clips(n: int) -> list[Path]:
    """``n`` ESC-10 clips (5 s, 44.1 kHz Ogg), one per class."""
    root = need_shared() / "train" / "general" / "esc10-folds1-4"
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    return [sorted(c.glob("*.ogg"))[0] for c in classes[:n]]


def write_wav(path: Path, x: np.ndarray, sample_rate_hz: int) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, dtype=np.float32)
    sf.write(str(path), x.T if x.ndim == 2 else x, sample_rate_hz, subtype="PCM_16")
    return path


def write_stem_mp4(path: Path, stems: list[np.ndarray], sample_rate_hz: int = 44100) -> Path:
    """A NI-Stems-like MP4: one AAC stream per entry of ``stems`` ([2, T] each), in order."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    frame_len = 1024
    with av.open(str(path), "w", format="mp4") as container:
        streams = []
        for _ in stems:
            s = container.add_stream("aac", rate=sample_rate_hz, layout="stereo")
            s.bit_rate = 128000
            streams.append(s)
        for stream, x in zip(streams, stems):
            x = np.asarray(x, dtype=np.float32)
            for i in range(0, x.shape[1], frame_len):
                chunk = np.ascontiguousarray(x[:, i:i + frame_len])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate = sample_rate_hz
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def run_bench(tmp_path: Path, monkeypatch, *args: str) -> list[dict]:
    """`bench run --codecs opus@12` in-process (one worker, SI-SDR only); returns the result rows."""
    from bench.cli import main

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(["run", "--codecs", "opus@12", "--metrics", "si_sdr", "--workers", "1", "--no-progress",
               "--out", str(out), *args])
    assert rc == 0, f"bench run exited {rc}"
    con = sqlite3.connect(out / "results.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM results")]
    items = [dict(r) for r in con.execute("SELECT * FROM items")]
    con.close()
    assert rows, "no results written"
    for r in rows:
        assert r["status"] == "ok", r
        assert r["value"] is not None and math.isfinite(r["value"]), r
        assert 8.0 < r["measured_kbps"] < 16.0, r  # opus@12 really coded it
    return [{**r, "item": next(i for i in items if i["item_id"] == r["item_id"])} for r in rows]


def manifest(tmp_path: Path) -> dict:
    import json

    return json.loads((tmp_path / "run" / "manifest.json").read_text())
