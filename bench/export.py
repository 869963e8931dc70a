"""Export a run as plain files: its per-item rows as a table, its reconstructions as audio.

**Rows** (:func:`export_rows`, ``bench export RUN_DIR --out FILE [--format csv|jsonl|parquet]``): one
row per (item, codec, operating point, metric) with the value, status and error, the rates, the
metric's ``compute_s``, the item's metadata, the codec's provenance (checkpoint, checkpoint hash,
fingerprint) and the coded row's bytes and seconds: the columns of :data:`ROW_COLUMNS`, the same in
every format. Not-applicable metrics (the ``skipped`` table) are rows too, with status ``skipped``, a
null value and the reason in ``error`` (``include_skipped=False`` leaves them out). Columns are
described in docs/formats.md.

**Audio** (:func:`export_run`, ``bench export RUN_DIR --audio DIR``). Layout under the output folder::

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
import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

import numpy as np

from bench.cache import ReconCache
from bench.errors import UserError
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



# --- the per-item rows of a run as a table file (bench export --out) ------------------------------

#: file formats :func:`export_rows` writes
ROW_FORMATS = ("csv", "jsonl", "parquet")

#: file name endings :func:`row_format_of` recognises
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json-lines": "jsonl", ".jsonlines": "jsonl",
                   ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}

#: the columns of an exported row, in order, with their type (``str``, ``float`` or ``int``); every
#: column is present in every format and row (null where the run has no value, e.g. ``compute_s`` of a
#: run made before it was recorded)
ROW_COLUMNS: tuple[tuple[str, str], ...] = (
    # the result: one (item, codec, operating point, metric)
    ("run_id", "str"), ("item_id", "str"), ("codec", "str"), ("op", "str"), ("metric", "str"),
    ("value", "float"), ("status", "str"), ("error", "str"), ("nominal_kbps", "float"),
    ("measured_kbps", "float"), ("compute_s", "float"), ("extra", "str"),
    # the item
    ("dataset", "str"), ("split", "str"), ("domain", "str"), ("speaker", "str"), ("track", "str"),
    ("duration_s", "float"), ("transcript", "str"),
    # the codec's provenance and the coded row (encode/decode of this item at this point)
    ("checkpoint", "str"), ("checkpoint_hash", "str"), ("codec_fingerprint", "str"), ("n_bytes", "int"),
    ("encode_s", "float"), ("decode_s", "float"), ("audio_s", "float"), ("timing", "str"),
)

#: columns of the SQL row (the rest come from the run's codec info and manifest)
_SQL_COLUMNS = tuple(n for n, _ in ROW_COLUMNS if n not in ("checkpoint", "checkpoint_hash", "codec_fingerprint"))
_ITEM_COLUMNS = ("dataset", "split", "domain", "speaker", "track", "duration_s", "transcript")
_CODED_COLUMNS = ("n_bytes", "encode_s", "decode_s", "audio_s", "timing")
_PARQUET_BATCH = 65536


def row_format_of(path: str | Path) -> str | None:
    """The row format a file name implies (``.csv``, ``.jsonl``/``.json-lines``/``.ndjson``, ``.parquet``), or None."""
    name = str(path).lower()
    return next((fmt for suffix, fmt in _SUFFIX_FORMATS.items() if name.endswith(suffix)), None)


@dataclass
class RowsSummary:
    """What :func:`export_rows` wrote: how many result and skipped rows of which run, where."""

    out: str
    run_id: str
    fmt: str
    results: int = 0
    skipped: int = 0

    def line(self) -> str:
        """One summary line for the command line."""
        where = "stdout" if self.out == "-" else self.out
        return (f"exported {self.results + self.skipped} row(s) of run {self.run_id} ({self.results} result(s), "
                f"{self.skipped} skipped as not applicable) as {self.fmt} to {where}")


def _table_columns(conn: Any, table: str) -> set[str]:
    """The columns a table of this file has (an older file lacks the newer ones)."""
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _rows_query(conn: Any, include_skipped: bool) -> str:
    """The SQL of a run's rows: results (and skipped) joined with their item and coded rows, ordered."""
    has_r, has_c = _table_columns(conn, "results"), _table_columns(conn, "coded")
    compute = "r.compute_s" if "compute_s" in has_r else "NULL"
    timing = "c.timing" if "timing" in has_c else "NULL"
    items = ", ".join(f"i.{c}" for c in _ITEM_COLUMNS)
    coded = f"c.n_bytes, c.encode_s, c.decode_s, c.audio_s, {timing}"
    joins = ("LEFT JOIN items i ON i.run_id={t}.run_id AND i.item_id={t}.item_id "
             "LEFT JOIN coded c ON c.run_id={t}.run_id AND c.item_id={t}.item_id AND c.codec={t}.codec "
             "AND c.op={t}.op")
    sql = (f"SELECT r.run_id, r.item_id, r.codec, r.op, r.metric, r.value, r.status, r.error, r.nominal_kbps, "
           f"r.measured_kbps, {compute}, r.extra, {items}, {coded} FROM results r {joins.format(t='r')} "
           "WHERE r.run_id=:run")
    if include_skipped:
        sql += (f" UNION ALL SELECT s.run_id, s.item_id, s.codec, s.op, s.metric, NULL, 'skipped', s.reason, "
                f"c.nominal_kbps, c.measured_kbps, NULL, NULL, {items}, {coded} FROM skipped s "
                f"{joins.format(t='s')} WHERE s.run_id=:run")
    return sql + " ORDER BY 3, 4, 2, 5"  # codec, op, item, metric


def _provenance(store: Store, run_id: str, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """codec key -> checkpoint, checkpoint hash and fingerprint, from the codec info and the manifest."""
    infos: dict[str, dict[str, Any]] = {}
    for codec, text in store.conn.execute("SELECT codec, info FROM codec_info WHERE run_id=?", (run_id,)):
        try:
            info = json.loads(text) if text else {}
        except json.JSONDecodeError:
            info = {}
        infos[codec] = info if isinstance(info, dict) else {}
    codecs = manifest.get("codecs")
    listed: dict[str, Any] = codecs if isinstance(codecs, dict) else {}
    fingerprints = dict(store.identities(run_id, "codec"))
    if isinstance(manifest.get("codec_fingerprints"), dict):
        fingerprints.update(manifest["codec_fingerprints"])
    out: dict[str, dict[str, Any]] = {}
    for codec in set(infos) | set(listed) | set(fingerprints):
        info = infos.get(codec, {})
        entry = listed[codec] if isinstance(listed.get(codec), dict) else {}
        out[codec] = {"checkpoint": info.get("checkpoint"),
                      "checkpoint_hash": info.get("checkpoint_hash", entry.get("checkpoint_hash")),
                      "codec_fingerprint": fingerprints.get(codec)}
    return out


def _typed(value: Any, kind: str) -> Any:
    """A cell as its column's type (SQLite is dynamically typed); None stays None."""
    if value is None:
        return None
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    return value if isinstance(value, str) else str(value)


class RunRows:
    """A run's rows (results, and skipped ones unless left out) read from its store, read-only.

    Use as a context manager: ``with RunRows(run_dir) as rows: for row in rows: ...``; each row is a
    dict of :data:`ROW_COLUMNS`. ``counts`` holds how many result and skipped rows were read.
    """

    def __init__(self, run_dir: str | Path, run_id: str | None = None, *, include_skipped: bool = True) -> None:
        """Open the run's results database read-only (StoreError when it is not a run)."""
        self.db = _run_db(run_dir)
        self.store = Store(self.db, readonly=True)
        try:
            self.run_id = self.store.resolve_run_id(run_id)
            self.provenance = _provenance(self.store, self.run_id, self.store.manifest(self.run_id))
        except BaseException:
            self.store.close()
            raise
        self.include_skipped = include_skipped
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> "RunRows":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.store.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The rows in order of codec, operating point, item and metric."""
        empty = {"checkpoint": None, "checkpoint_hash": None, "codec_fingerprint": None}
        cur = self.store.conn.execute(_rows_query(self.store.conn, self.include_skipped), {"run": self.run_id})
        while batch := cur.fetchmany(4096):
            for values in batch:
                row = dict(zip(_SQL_COLUMNS, values))
                row.update(self.provenance.get(row["codec"], empty))
                self.counts["skipped" if row["status"] == "skipped" else "results"] += 1
                yield {name: _typed(row[name], kind) for name, kind in ROW_COLUMNS}


def _csv_text(value: Any) -> Any:
    """A CSV cell: empty for null, the shortest exact text of a float (``repr``)."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def _json_value(value: Any) -> Any:
    """A JSON value: null for null and for a non-finite float (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv_rows(rows: Iterable[dict[str, Any]], f: TextIO) -> None:
    """Rows as CSV with a header row (quoted by the csv module where needed)."""
    import csv

    writer = csv.writer(f, lineterminator="\n")
    writer.writerow([name for name, _ in ROW_COLUMNS])
    for row in rows:
        writer.writerow([_csv_text(row[name]) for name, _ in ROW_COLUMNS])


def _write_jsonl_rows(rows: Iterable[dict[str, Any]], f: TextIO) -> None:
    """Rows as JSON Lines: one object per row, every column present (null where empty)."""
    for row in rows:
        f.write(json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False, allow_nan=False))
        f.write("\n")


def _pyarrow() -> Any:
    """The ``pyarrow`` module with ``pyarrow.parquet``; MissingBackendError naming the extra when absent."""
    from bench.deps import MissingBackendError, install_hint

    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the writer lives in the submodule
    except ImportError:
        raise MissingBackendError("--format parquet needs pyarrow, which is not installed: "
                                  f"{install_hint(['pyarrow'])}") from None
    return pyarrow


def _write_parquet_rows(rows: Iterable[dict[str, Any]], path: Path, pa: Any) -> None:
    """Rows as one Parquet file with a fixed schema (string, float64, int64 columns), in batches."""
    types = {"str": pa.string(), "float": pa.float64(), "int": pa.int64()}
    schema = pa.schema([(name, types[kind]) for name, kind in ROW_COLUMNS])
    with pa.parquet.ParquetWriter(str(path), schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _PARQUET_BATCH:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                batch = []
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))  # the rest; the schema even when empty


def _check_out(out: str, db: Path) -> None:
    """UserError for an output path that is the run's results database (or its journal) or a folder."""
    if out == "-":
        return
    target, real_db = Path(out).expanduser().resolve(), db.resolve()
    protected = {real_db} | {real_db.with_name(real_db.name + s) for s in ("-wal", "-shm", "-journal")}
    same = target.exists() and real_db.exists() and os.path.samefile(target, real_db)
    if target in protected or same:
        raise UserError(f"--out {out} is the run's results database (or its journal); write the rows elsewhere")
    if target.is_dir():
        raise UserError(f"--out {out} is a folder, expected a file path")


def _resolve_format(out: str, fmt: str | None) -> str:
    """The format asked for, else the one ``out``'s name implies; UserError when neither is known or it is
    parquet to stdout."""
    if fmt is None:
        fmt = row_format_of(out) if out != "-" else None
        if fmt is None:
            raise UserError(f"give --format {'|'.join(ROW_FORMATS)}: it cannot be told from the name {out!r}")
    if fmt not in ROW_FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose from {', '.join(ROW_FORMATS)}")
    if fmt == "parquet" and out == "-":
        raise UserError("--format parquet cannot go to stdout ('-'); give a file path")
    return fmt


def export_rows(run_dir: str | Path, out: str | Path, fmt: str | None = None, *, run_id: str | None = None,
                include_skipped: bool = True, stdout: TextIO | None = None) -> RowsSummary:
    """Write the per-item rows of a run (:data:`ROW_COLUMNS`, one per item, codec, op and metric) to ``out``.

    ``fmt`` is ``csv``, ``jsonl`` or ``parquet`` (default: from ``out``'s name); ``out="-"`` writes
    CSV or JSON Lines to ``stdout`` (default ``sys.stdout``). Skipped (not applicable) rows come with
    status ``skipped``, a null value and the reason in ``error`` unless ``include_skipped=False``.
    The run is opened read-only; a file is written through a temporary name, so a failed export
    leaves no half file. UserError (exit 2) for an unknown format, an ``out`` that is the results
    database, a missing pyarrow for parquet, or a ``run_dir`` that is not a run.
    """
    out = str(out)
    _check_out(out, _run_db(run_dir))
    fmt = _resolve_format(out, fmt)
    pa = _pyarrow() if fmt == "parquet" else None
    with RunRows(run_dir, run_id, include_skipped=include_skipped) as rows:
        if out == "-":
            stream = stdout if stdout is not None else sys.stdout
            (_write_csv_rows if fmt == "csv" else _write_jsonl_rows)(rows, stream)
            stream.flush()
        else:
            _write_atomic(Path(out).expanduser(), lambda tmp: _write_rows_file(rows, tmp, fmt, pa))
        return RowsSummary(out, rows.run_id, fmt, rows.counts["results"], rows.counts["skipped"])


def _write_rows_file(rows: Iterable[dict[str, Any]], path: Path, fmt: str, pa: Any) -> None:
    """Rows to one file in ``fmt`` (text formats as UTF-8)."""
    if fmt == "parquet":
        _write_parquet_rows(rows, path, pa)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        (_write_csv_rows if fmt == "csv" else _write_jsonl_rows)(rows, f)
