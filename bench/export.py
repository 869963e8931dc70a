"""Export a run's reconstructions, bitstreams and prepared references as plain files.

Layout under the output folder::

    DIR/<codec>/<op>/<item>.wav   the reconstruction (32-bit float WAV: exact, any peak kept)
    DIR/<codec>/<op>/<item>.bin   the bitstream bytes the codec wrote
    DIR/reference/<item>.wav      the prepared reference the codecs were given, once per item

Everything is read from the run's store (read-only) and its reconstruction cache
(``ReconCache(readonly=True)``, every digest checked): the coded rows name their ``cache_key``,
each reconstruction's metadata names its ``input_hash``, and that leads to the cached reference
(``bench.cache.reference_key``). Nothing is recomputed and nothing in the cache changes. A row
without a sound entry is skipped and counted with its reason; a wrong file is never written.

Codec keys (``dac:/a/b/ckpt.safetensors``), operating points and item ids become file names by
:func:`safe_names`: characters outside ``[A-Za-z0-9._-]`` become ``_``, and a name that changed,
or that would collide with another (also ignoring case), gets a short hash of the original.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bench.cache import ReconCache
from bench.store import Store, StoreError

REFERENCE_DIR = "reference"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportSummary:
    """What an export wrote and what it skipped, by reason (one count per reason)."""

    out_dir: Path
    run_id: str
    reconstructions: int = 0
    references: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """One summary line for the command line."""
        text = (f"exported {self.reconstructions} reconstruction(s) with bitstreams and {self.references} "
                f"reference(s) of run {self.run_id} to {self.out_dir}")
        if self.skipped:
            reasons = "; ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f"; skipped {sum(self.skipped.values())}: {reasons}"
        return text


@dataclass(frozen=True)
class _Coded:
    """One coded row of the run: where its reconstruction sits in the cache."""

    item_id: str
    codec: str
    op: str
    cache_key: str | None


def safe_names(names: Iterable[str]) -> dict[str, str]:
    """Map each name to a distinct, file-name-safe one (stable: it depends only on the name itself).

    A name already safe and unique ignoring case is kept; any other gets ``-<8 hex of sha256>``.
    """
    names = sorted(set(names))
    base = {n: (_UNSAFE.sub("_", n).strip("._") or "_") for n in names}
    folded = Counter(b.lower() for b in base.values())
    out: dict[str, str] = {}
    for n in names:
        b = base[n]
        if b != n or folded[b.lower()] > 1 or b.lower() == REFERENCE_DIR:
            b = f"{b}-{hashlib.sha256(n.encode()).hexdigest()[:8]}"
        out[n] = b
    return out


def _run_db(run_dir: str | Path) -> Path:
    """``RUN_DIR/results.sqlite``; StoreError (exit 2) when RUN_DIR is not a run."""
    p = Path(run_dir)
    if p.is_file():
        return p
    if not p.is_dir():
        raise StoreError(f"{p}: no such folder; is this a run directory made by 'bench run'?")
    return p / "results.sqlite"


def _read_run(run_dir: str | Path, run_id: str | None) -> tuple[str, dict[str, Any], list[_Coded]]:
    """The run id, manifest and coded rows of a run (the latest unless ``run_id``)."""
    db = _run_db(run_dir)
    with Store(db, readonly=True) as store:
        run_id = store.resolve_run_id(run_id)
        manifest = store.manifest(run_id)
        rows = store.conn.execute(
            "SELECT item_id, codec, op, cache_key FROM coded WHERE run_id=? ORDER BY codec, op, item_id",
            (run_id,)).fetchall()
    coded = [_Coded(str(i), str(c), str(o), k if isinstance(k, str) and k else None) for i, c, o, k in rows]
    return run_id, manifest, coded


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary name and rename into place, so no half file is ever left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_wav(path: Path, audio: np.ndarray, sample_rate_hz: int) -> None:
    """Audio [C, T] as a 32-bit float WAV (the cached samples exactly, peaks above 1 kept)."""
    import soundfile as sf

    _write_atomic(path, lambda tmp: sf.write(str(tmp), np.asarray(audio).T, sample_rate_hz,
                                             subtype="FLOAT", format="WAV"))


class _Exporter:
    """Writes one run's files; holds the cache, the file names and the counts."""

    def __init__(self, cache: ReconCache, out_dir: Path, coded: list[_Coded], summary: ExportSummary) -> None:
        """Prepare the file names of every codec, operating point and item of ``coded``."""
        self.cache = cache
        self.out_dir = out_dir
        self.coded = coded
        self.summary = summary
        self.codec_names = safe_names(r.codec for r in coded)
        self.op_names = safe_names(r.op for r in coded)
        self.item_names = safe_names(r.item_id for r in coded)
        self.input_hashes: dict[str, str] = {}

    def _damaged(self, n_before: int) -> bool:
        return len(self.cache.problems) > n_before

    def reconstruction(self, row: _Coded) -> None:
        """Write one reconstruction and its bitstream, or count why not."""
        if row.cache_key is None:
            self.summary.skipped["without a cache key (not coded)"] += 1
            return
        n_before = len(self.cache.problems)
        hit = self.cache.get(row.cache_key)
        if hit is None:
            reason = "damaged in the cache" if self._damaged(n_before) else "missing from the cache"
            self.summary.skipped[f"reconstruction(s) {reason}"] += 1
            return
        audio, sr, bitstream, meta = hit
        folder = self.out_dir / self.codec_names[row.codec] / self.op_names[row.op]
        stem = self.item_names[row.item_id]
        _write_wav(folder / f"{stem}.wav", audio, sr)
        _write_atomic(folder / f"{stem}.bin", lambda tmp: tmp.write_bytes(bitstream))
        self.summary.reconstructions += 1
        input_hash = meta.get("input_hash")
        if isinstance(input_hash, str) and input_hash:
            self.input_hashes.setdefault(row.item_id, input_hash)

    def reference(self, item_id: str) -> None:
        """Write one item's prepared reference, or count why not."""
        input_hash = self.input_hashes.get(item_id) or self._input_hash(item_id)
        if input_hash is None:
            self.summary.skipped["reference(s) without an input hash in the cache"] += 1
            return
        n_before = len(self.cache.problems)
        hit = self.cache.get_reference(input_hash)
        if hit is None:
            reason = "damaged in the cache" if self._damaged(n_before) else "missing from the cache"
            self.summary.skipped[f"reference(s) {reason}"] += 1
            return
        _write_wav(self.out_dir / REFERENCE_DIR / f"{self.item_names[item_id]}.wav", hit[0], hit[1])
        self.summary.references += 1

    def _input_hash(self, item_id: str) -> str | None:
        """The input hash named by any cached reconstruction of the item (metadata alone, digest checked)."""
        for row in self.coded:
            if row.item_id == item_id and row.cache_key:
                meta = self.cache.meta(row.cache_key)
                found = meta.get("input_hash") if meta else None
                if isinstance(found, str) and found:
                    return found
        return None


def export_run(run_dir: str | Path, out_dir: str | Path, *, run_id: str | None = None,
               cache_dir: str | Path | None = None) -> ExportSummary:
    """Write every reconstruction, bitstream and reference of a run under ``out_dir`` (see the module).

    ``cache_dir`` overrides the run manifest's ``cache_dir`` (a cache moved since the run).
    Raises :class:`~bench.store.StoreError` when ``run_dir`` is not a run.
    """
    run_id, manifest, coded = _read_run(run_dir, run_id)
    root = cache_dir if cache_dir is not None else manifest.get("cache_dir")
    cache = ReconCache(root, readonly=True)
    out = Path(out_dir)
    summary = ExportSummary(out, run_id)
    exporter = _Exporter(cache, out, coded, summary)
    for row in coded:
        exporter.reconstruction(row)
    for item_id in sorted({r.item_id for r in coded}):
        exporter.reference(item_id)
    return summary

