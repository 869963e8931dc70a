"""Content-addressed cache of reconstructions and bitstreams, checked on every read.

Key = sha256 of the cache format version, the codec's fingerprint (adapter code and version, its
parameters, weights hash, backend library versions, device type: ``Codec.fingerprint``), the
operating point (name, nominal kbps, kind, parameters), the sample rates, the harness's own
resampling and channel code (``bench.audio``) with the soxr version, and the input audio's hash.
Change any of them and the old entry is simply never looked up again.

Each entry is three files under ``ROOT/ab/<key>``:

* ``.flac``  decoded audio at the item's rate (24-bit; a gain in the JSON undoes any scaling
  applied to keep peaks above full scale representable),
* ``.bin``   the exact bitstream bytes (measured kbps is recomputed from them),
* ``.json``  metadata (sizes, timings, rates, gain) with the sha256 of the other two files and of
  its own content; written last, so its presence marks a complete entry.

``get`` checks every digest; an entry that does not match (a truncated bitstream, an edited
gain) is reported in :attr:`ReconCache.problems`, removed, and treated as a miss, so the runner
recomputes it and says so. Writes go to temporary names and are renamed into place; a failed
write removes its temporary files, and temporary files left by a killed process are swept from
the folder at the next write there. The default root is ``<cache>/recon``, with ``<cache>`` from
``$BENCH_CACHE_DIR``, the config file's ``[cache] dir``, or ``~/.cache/bench``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError

CACHE_FORMAT = 2
#: temporary files older than this are removed even if their writer's pid looks alive (pid reuse)
STALE_TMP_S = 24 * 3600.0
#: a temporary file of a dead writer younger than this is left alone (another host sharing the cache)
FRESH_TMP_S = 60.0


class CacheError(UserError):
    """A cache folder that cannot be used (a file where a folder should be, not writable)."""


def default_cache_dir() -> Path:
    """``<cache>/recon`` where ``<cache>`` follows ``bench.config.cache_dir`` (env, config file, XDG)."""
    from bench.config import cache_dir

    return cache_dir() / "recon"


def pipeline_fingerprint() -> str:
    """The harness code between the item and the codec (resampling, channel policy) and soxr's version."""
    from bench.fingerprint import digest, package_versions, source_fingerprint

    return digest([source_fingerprint(["bench.audio"]), package_versions(["soxr"])])


def cache_key(codec_fingerprint: str, op: Any, codec_rate_hz: int, item_rate_hz: int, input_hash: str,
              pipeline: str | None = None) -> str:
    """The key of one reconstruction: everything that decides its samples and bytes.

    ``op`` is an :class:`~bench.codecs.base.OperatingPoint` (or its name, for tools that only know it).
    """
    op_id = [op.name, op.nominal_kbps, op.kind, op.params] if hasattr(op, "name") else [str(op)]
    raw = json.dumps([CACHE_FORMAT, codec_fingerprint, op_id, codec_rate_hz, item_rate_hz, input_hash,
                      pipeline if pipeline is not None else pipeline_fingerprint()], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return _sha256(json.dumps(body, sort_keys=True).encode())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ReconCache:
    def __init__(self, root: str | Path | None = None, *, refresh: bool = False, readonly: bool = False) -> None:
        """Open (creating) the cache folder.

        ``refresh=True`` ignores existing entries (they are rewritten); ``readonly=True`` is for
        readers (reports): nothing is created or removed, damaged entries are only reported.
        """
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.refresh = refresh
        self.readonly = readonly
        #: one line per damaged entry found by ``get`` (digest mismatch, unreadable file)
        self.problems: list[str] = []
        self._written: set[str] = set()  # entries written by this instance: served even when refreshing
        if readonly:
            return
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(f"cache folder {self.root} exists and is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create cache folder {self.root}: {exc.strerror or exc}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise CacheError(f"cache folder {self.root} is not writable")

    def paths(self, key: str) -> dict[str, Path]:
        d = self.root / key[:2]
        return {ext: d / f"{key}.{ext}" for ext in ("flac", "bin", "json")}

    def audio_path(self, key: str) -> Path:
        return self.paths(key)["flac"]

    def has(self, key: str) -> bool:
        p = self.paths(key)
        return all(p[e].exists() for e in ("flac", "bin", "json"))

    def get(self, key: str) -> tuple[np.ndarray, int, bytes, dict[str, Any]] | None:
        """(audio [C, T], rate, bitstream, meta) or None when absent, refreshed, or damaged (then recorded)."""
        if (self.refresh and key not in self._written) or not self.has(key):
            return None
        import soundfile as sf

        p = self.paths(key)
        try:
            meta = json.loads(p["json"].read_text())
            flac_bytes = p["flac"].read_bytes()
            bitstream = p["bin"].read_bytes()
            problem = self._check(meta, flac_bytes, bitstream)
            if problem is None:
                data, sr = sf.read(p["flac"], dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        if problem is not None:
            self.problems.append(f"{key[:12]}: {problem}")
            if not self.readonly:
                self.remove(key)
            return None
        audio = data.T * np.float32(meta.get("gain", 1.0))
        return np.ascontiguousarray(audio, dtype=np.float32), int(sr), bitstream, meta

    @staticmethod
    def _check(meta: Any, flac_bytes: bytes, bitstream: bytes) -> str | None:
        if not isinstance(meta, dict) or meta.get("cache_format") != CACHE_FORMAT:
            return "metadata of another cache format"
        if meta.get("meta_sha256") != _meta_digest(meta):
            return "metadata digest mismatch (the .json was edited or damaged)"
        if meta.get("bin_sha256") != _sha256(bitstream):
            return f"bitstream digest mismatch ({len(bitstream)} bytes, {meta.get('n_bytes')} recorded)"
        if meta.get("flac_sha256") != _sha256(flac_bytes):
            return "audio digest mismatch (the .flac was modified or truncated)"
        return None

    def remove(self, key: str) -> None:
        for path in self.paths(key).values():
            path.unlink(missing_ok=True)

    def put(self, key: str, audio: np.ndarray, sample_rate_hz: int, bitstream: bytes, meta: dict[str, Any]) -> None:
        import soundfile as sf

        p = self.paths(key)
        p["flac"].parent.mkdir(parents=True, exist_ok=True)
        self.sweep_temporary(p["flac"].parent)
        audio = np.asarray(audio, dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        gain = 1.0
        if peak > 1.0:
            gain = peak / 0.999
            audio = audio / gain
        tmp = {ext: path.with_suffix(f".tmp{os.getpid()}.{ext}") for ext, path in p.items()}
        try:
            sf.write(str(tmp["flac"]), audio.T, sample_rate_hz, subtype="PCM_24", format="FLAC")
            tmp["bin"].write_bytes(bitstream)
            meta = dict(meta, gain=gain, sample_rate_hz=sample_rate_hz, n_bytes=len(bitstream),
                        cache_format=CACHE_FORMAT, bin_sha256=_sha256(bitstream),
                        flac_sha256=_sha256(tmp["flac"].read_bytes()))
            meta["meta_sha256"] = _meta_digest(json.loads(json.dumps(meta, default=str)))
            tmp["json"].write_text(json.dumps(meta, sort_keys=True, default=str))
            self.remove(key)  # the .json goes last below: no moment shows a mixed entry as complete
            os.replace(tmp["flac"], p["flac"])
            os.replace(tmp["bin"], p["bin"])
            os.replace(tmp["json"], p["json"])
            self._written.add(key)
        finally:
            for path in tmp.values():
                path.unlink(missing_ok=True)

    @staticmethod
    def sweep_temporary(folder: Path) -> int:
        """Remove temporary files that killed writers left in ``folder``; returns how many."""
        now = time.time()
        n = 0
        for path in folder.glob("*.tmp*.*"):
            try:
                pid = int(path.suffixes[-2].removeprefix(".tmp"))
                age_s = now - path.stat().st_mtime
            except (ValueError, IndexError, OSError):
                continue
            if age_s > STALE_TMP_S or (pid != os.getpid() and not _pid_alive(pid) and age_s > FRESH_TMP_S):
                path.unlink(missing_ok=True)
                n += 1
        return n
