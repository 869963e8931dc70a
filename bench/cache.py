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

Prepared references (the item after the channel policy and loudness normalisation: what every
codec was given) are cached once per item beside the reconstructions, so a report can play them
without the dataset or the runner. Their key is :func:`reference_key` of the input hash
(``bench.audio.array_hash`` of the prepared samples and rate, the same hash that keys the
reconstructions); an entry is two files, ``.flac`` and ``.json`` (with the sha256 of both), and
every reconstruction's ``.json`` records the ``input_hash`` it was coded from, which links the two.

``get`` checks every digest; an entry that does not match (a truncated bitstream, an edited
gain) is reported in :attr:`ReconCache.problems`, removed, and treated as a miss, so the runner
recomputes it and says so. Writes go to temporary names and are renamed into place; a failed
write removes its temporary files, and temporary files left by a killed process are swept from
the folder at the next write there. The default root is ``<cache>/recon``, with ``<cache>`` from
``$BENCH_CACHE_DIR``, the config file's ``[cache] dir``, or ``~/.cache/bench``.
"""

from __future__ import annotations

import hashlib
import io
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


def reference_key(input_hash: str) -> str:
    """The key of a prepared reference: its input hash, in a namespace no reconstruction key can share.

    The input hash already names the samples and their rate, so nothing else decides the entry.
    """
    raw = json.dumps([CACHE_FORMAT, "reference", input_hash])
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
    """The content-addressed store of reconstructions, bitstreams and prepared references (see the module)."""

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
        self._references_checked: set[str] = set()  # reference keys found sound or written by this instance
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
        """The entry's files by extension (``flac``, ``bin``, ``json``; a reference has no ``bin``)."""
        d = self.root / key[:2]
        return {ext: d / f"{key}.{ext}" for ext in ("flac", "bin", "json")}

    def audio_path(self, key: str) -> Path:
        """The entry's FLAC file (read it through :meth:`get`, which checks its digest)."""
        return self.paths(key)["flac"]

    def has(self, key: str) -> bool:
        """Whether a complete reconstruction entry is present (not whether it is sound: :meth:`get` says)."""
        return self._present(key, ("flac", "bin", "json"))

    def _present(self, key: str, exts: tuple[str, ...]) -> bool:
        p = self.paths(key)
        return all(p[e].exists() for e in exts)

    def get(self, key: str) -> tuple[np.ndarray, int, bytes, dict[str, Any]] | None:
        """(audio [C, T], rate, bitstream, meta) or None when absent, refreshed, or damaged (then recorded)."""
        hit = self._read(key, with_bitstream=True)
        if hit is None:
            return None
        audio, sr, bitstream, meta = hit
        return audio, sr, bitstream or b"", meta

    def get_reference(self, input_hash: str) -> tuple[np.ndarray, int] | None:
        """The prepared reference (audio [C, T], rate) of ``input_hash``, or None as for :meth:`get`."""
        hit = self._read(reference_key(input_hash), with_bitstream=False)
        return None if hit is None else (hit[0], hit[1])

    def meta(self, key: str) -> dict[str, Any] | None:
        """An entry's metadata alone, its own digest checked (no audio read); None when absent or damaged.

        Enough to follow a reconstruction to its reference (``input_hash``) without decoding it.
        """
        try:
            meta = json.loads(self.paths(key)["json"].read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("cache_format") != CACHE_FORMAT:
            return None
        return meta if meta.get("meta_sha256") == _meta_digest(meta) else None

    def _read(self, key: str, *, with_bitstream: bool) -> tuple[np.ndarray, int, bytes | None, dict[str, Any]] | None:
        """Read and check one entry (with its bitstream for a reconstruction); record and drop a damaged one."""
        exts = ("flac", "bin", "json") if with_bitstream else ("flac", "json")
        if (self.refresh and key not in self._written) or not self._present(key, exts):
            return None
        import soundfile as sf

        p = self.paths(key)
        bitstream: bytes | None = None
        try:
            meta = json.loads(p["json"].read_text())
            flac_bytes = p["flac"].read_bytes()
            bitstream = p["bin"].read_bytes() if with_bitstream else None
            problem = self._check(meta, flac_bytes, bitstream)
            if problem is None:  # decode the bytes that were checked, not the file again
                data, sr = sf.read(io.BytesIO(flac_bytes), dtype="float32", always_2d=True)
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
    def _check(meta: Any, flac_bytes: bytes, bitstream: bytes | None) -> str | None:
        """Why an entry cannot be served, or None; ``bitstream`` None for a reference (which has none)."""
        if not isinstance(meta, dict) or meta.get("cache_format") != CACHE_FORMAT:
            return "metadata of another cache format"
        if meta.get("meta_sha256") != _meta_digest(meta):
            return "metadata digest mismatch (the .json was edited or damaged)"
        if bitstream is None and meta.get("kind") != "reference":
            return "not a reference entry"
        if bitstream is not None and meta.get("bin_sha256") != _sha256(bitstream):
            return f"bitstream digest mismatch ({len(bitstream)} bytes, {meta.get('n_bytes')} recorded)"
        if meta.get("flac_sha256") != _sha256(flac_bytes):
            return "audio digest mismatch (the .flac was modified or truncated)"
        return None

    def remove(self, key: str) -> None:
        """Delete an entry's files (any of them that exist)."""
        for path in self.paths(key).values():
            path.unlink(missing_ok=True)

    def put(self, key: str, audio: np.ndarray, sample_rate_hz: int, bitstream: bytes, meta: dict[str, Any]) -> None:
        """Store a reconstruction and its bitstream under ``key`` (atomically: the .json goes last)."""
        self._write(key, audio, sample_rate_hz, bitstream, meta)

    def put_reference(self, input_hash: str, audio: np.ndarray, sample_rate_hz: int) -> str:
        """Store a prepared reference (audio [C, T] at the item's rate) under :func:`reference_key`; returns the key."""
        key = reference_key(input_hash)
        self._write(key, audio, sample_rate_hz, None, {"kind": "reference", "input_hash": input_hash})
        self._references_checked.add(key)
        return key

    def ensure_reference(self, input_hash: str, audio: np.ndarray, sample_rate_hz: int) -> str:
        """Store a prepared reference unless a sound copy is there; checked once per instance, so once per item.

        Called for every operating point of an item; only the first call reads (or writes) anything.
        """
        key = reference_key(input_hash)
        if key not in self._references_checked and self.get_reference(input_hash) is None:
            self.put_reference(input_hash, audio, sample_rate_hz)
        self._references_checked.add(key)
        return key

    def annotate(self, key: str, fields: dict[str, Any]) -> None:
        """Add ``fields`` to a sound entry's metadata, renewing its digest; audio and bitstream stay as they are.

        For entries written before a field existed (a reconstruction without its ``input_hash``).
        """
        p = self.paths(key)
        meta = dict(json.loads(p["json"].read_text()), **fields)
        meta["meta_sha256"] = _meta_digest(json.loads(json.dumps(meta, default=str)))
        tmp = p["json"].with_suffix(f".tmp{os.getpid()}.json")
        try:
            tmp.write_text(json.dumps(meta, sort_keys=True, default=str))
            os.replace(tmp, p["json"])
        finally:
            tmp.unlink(missing_ok=True)

    def _write(self, key: str, audio: np.ndarray, sample_rate_hz: int, bitstream: bytes | None,
               meta: dict[str, Any]) -> None:
        """Write an entry through temporary files; ``bitstream`` None writes no ``.bin`` (a reference)."""
        import soundfile as sf

        p = self.paths(key)
        p["flac"].parent.mkdir(parents=True, exist_ok=True)
        self.sweep_temporary(p["flac"].parent)
        audio, gain = _with_headroom(audio)
        exts = ("flac", "json") if bitstream is None else ("flac", "bin", "json")
        tmp = {ext: p[ext].with_suffix(f".tmp{os.getpid()}.{ext}") for ext in exts}
        try:
            sf.write(str(tmp["flac"]), audio.T, sample_rate_hz, subtype="PCM_24", format="FLAC")
            meta = dict(meta, gain=gain, sample_rate_hz=sample_rate_hz, cache_format=CACHE_FORMAT)
            if bitstream is not None:
                tmp["bin"].write_bytes(bitstream)
                meta.update(n_bytes=len(bitstream), bin_sha256=_sha256(bitstream))
            meta["flac_sha256"] = _sha256(tmp["flac"].read_bytes())
            meta["meta_sha256"] = _meta_digest(json.loads(json.dumps(meta, default=str)))
            tmp["json"].write_text(json.dumps(meta, sort_keys=True, default=str))
            self.remove(key)  # the .json goes last below: no moment shows a mixed entry as complete
            for ext in exts:
                os.replace(tmp[ext], p[ext])
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


def _with_headroom(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Audio scaled to fit a 24-bit FLAC when its peak is above full scale, and the gain that undoes it."""
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 1.0:
        return audio, 1.0
    gain = peak / 0.999
    return audio / gain, gain
