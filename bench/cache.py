"""Content-addressed cache of reconstructions and bitstreams.

Key = sha256(codec key, checkpoint hash, operating point, sample rates, input audio hash,
cache format version). Each entry is three files under ``ROOT/ab/<key>``:

* ``.flac``  decoded audio at the item's rate (24-bit; a gain in the JSON undoes any scaling
  applied to keep peaks above full scale representable),
* ``.bin``   the exact bitstream bytes (measured kbps is recomputed from them),
* ``.json``  metadata (sizes, timings, rates); written last, so its presence marks a complete entry.

Writes go to temporary names and are renamed into place, so a killed run never leaves a
half-written entry that a rerun would trust. The default root is ``<cache>/recon``, with
``<cache>`` from ``$BENCH_CACHE_DIR``, the config file's ``[cache] dir``, or ``~/.cache/bench``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``<cache>/recon`` where ``<cache>`` follows ``bench.config.cache_dir`` (env, config file, XDG)."""
    from bench.config import cache_dir

    return cache_dir() / "recon"


def cache_key(codec_key: str, checkpoint_hash: str, op_name: str, codec_rate_hz: int, item_rate_hz: int,
              input_hash: str) -> str:
    raw = json.dumps([CACHE_FORMAT, codec_key, checkpoint_hash, op_name, codec_rate_hz, item_rate_hz, input_hash])
    return hashlib.sha256(raw.encode()).hexdigest()


class ReconCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    def paths(self, key: str) -> dict[str, Path]:
        d = self.root / key[:2]
        return {ext: d / f"{key}.{ext}" for ext in ("flac", "bin", "json")}

    def audio_path(self, key: str) -> Path:
        return self.paths(key)["flac"]

    def has(self, key: str) -> bool:
        p = self.paths(key)
        return all(p[e].exists() for e in ("flac", "bin", "json"))

    def get(self, key: str) -> tuple[np.ndarray, int, bytes, dict[str, Any]] | None:
        """(audio [C, T], rate, bitstream, meta) or None when absent or unreadable."""
        if not self.has(key):
            return None
        import soundfile as sf

        p = self.paths(key)
        try:
            meta = json.loads(p["json"].read_text())
            data, sr = sf.read(str(p["flac"]), dtype="float32", always_2d=True)
            bitstream = p["bin"].read_bytes()
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed
            return None
        audio = data.T * np.float32(meta.get("gain", 1.0))
        return np.ascontiguousarray(audio, dtype=np.float32), int(sr), bitstream, meta

    def put(self, key: str, audio: np.ndarray, sample_rate_hz: int, bitstream: bytes, meta: dict[str, Any]) -> None:
        import soundfile as sf

        p = self.paths(key)
        p["flac"].parent.mkdir(parents=True, exist_ok=True)
        audio = np.asarray(audio, dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        gain = 1.0
        if peak > 1.0:
            gain = peak / 0.999
            audio = audio / gain
        meta = dict(meta, gain=gain, sample_rate_hz=sample_rate_hz, n_bytes=len(bitstream))
        tmp_flac = p["flac"].with_suffix(f".tmp{os.getpid()}.flac")
        tmp_bin = p["bin"].with_suffix(f".tmp{os.getpid()}.bin")
        tmp_json = p["json"].with_suffix(f".tmp{os.getpid()}.json")
        sf.write(str(tmp_flac), audio.T, sample_rate_hz, subtype="PCM_24", format="FLAC")
        tmp_bin.write_bytes(bitstream)
        tmp_json.write_text(json.dumps(meta, sort_keys=True))
        os.replace(tmp_flac, p["flac"])
        os.replace(tmp_bin, p["bin"])
        os.replace(tmp_json, p["json"])
