"""Results in SQLite: one row per (run, item, codec, operating point, metric).

Tables
------
``runs``     run_id, created_utc, manifest (JSON: versions, settings, hashes, seeds)
``items``    run_id, item_id, dataset, split, domain, speaker, track, duration_s, transcript, extra
``coded``    run_id, item_id, codec, op, nominal_kbps, measured_kbps, n_bytes, encode_s, decode_s,
             audio_s, status, error, cache_key, timing   -- one row per encode/decode of an item;
             ``timing`` says how encode/decode seconds were attributed (per item, split from a batch)
``results``  run_id, item_id, codec, op, metric, nominal_kbps, measured_kbps, value, status, error, extra,
             compute_s   -- seconds of the metric call for this item (a batch's time over its size)
``skipped``  run_id, item_id, codec, op, metric, reason   -- metrics that do not apply (no result row)
``identities`` run_id, kind (item/codec/metric), name, fingerprint -- what the rows of a run were
             computed from: an item's content hash, a codec's fingerprint, a metric's version and
             code. Resume compares them with the current ones and discards rows whose inputs changed.
``set_results`` run_id, codec, op, metric, stratum, n_items, value, ci_low, ci_high, status, error, extra,
             fingerprint -- set-level metrics (FAD): one value per (codec, operating point, metric,
             stratum) over a set of items, with its bootstrap CI; ``fingerprint`` names the item set's
             content and the metric's identity (code, weights), so a stored value never stands for
             another set or other weights (``bench.pipeline.set_level``).

``status`` is "ok" or "failed" (value NaN, ``error`` holds the reason). Writes are
``INSERT OR REPLACE`` on the primary key, so a resumed run never duplicates a row.

Columns added after a table's first release (:data:`ADDED_COLUMNS`) come last. A writer opening an
older file adds them (``ALTER TABLE ... ADD COLUMN``; old rows read NULL there); a read-only store
leaves the file alone, so readers must expect them to be missing (``frame`` adds them as NULL).
Tables added later (:data:`OPTIONAL_TABLES`: ``identities``, ``set_results``) are created by any writer
(``CREATE TABLE IF NOT EXISTS``); a reader of an older file finds none of their rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from bench.errors import UserError

SCHEMA_VERSION = 3  # 2: results.compute_s, coded.timing; 3: set_results

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, created_utc TEXT, manifest TEXT
);
CREATE TABLE IF NOT EXISTS items (
  run_id TEXT, item_id TEXT, dataset TEXT, split TEXT, domain TEXT, speaker TEXT, track TEXT,
  duration_s REAL, transcript TEXT, extra TEXT,
  PRIMARY KEY (run_id, item_id)
);
CREATE TABLE IF NOT EXISTS coded (
  run_id TEXT, item_id TEXT, codec TEXT, op TEXT, nominal_kbps REAL, measured_kbps REAL,
  n_bytes INTEGER, encode_s REAL, decode_s REAL, audio_s REAL, status TEXT, error TEXT,
  cache_key TEXT, timing TEXT,
  PRIMARY KEY (run_id, item_id, codec, op)
);
CREATE TABLE IF NOT EXISTS results (
  run_id TEXT, item_id TEXT, codec TEXT, op TEXT, metric TEXT, nominal_kbps REAL,
  measured_kbps REAL, value REAL, status TEXT, error TEXT, extra TEXT, compute_s REAL,
  PRIMARY KEY (run_id, item_id, codec, op, metric)
);
CREATE TABLE IF NOT EXISTS skipped (
  run_id TEXT, item_id TEXT, codec TEXT, op TEXT, metric TEXT, reason TEXT,
  PRIMARY KEY (run_id, item_id, codec, op, metric)
);
CREATE TABLE IF NOT EXISTS codec_info (
  run_id TEXT, codec TEXT, info TEXT, PRIMARY KEY (run_id, codec)
);
CREATE TABLE IF NOT EXISTS identities (
  run_id TEXT, kind TEXT, name TEXT, fingerprint TEXT, PRIMARY KEY (run_id, kind, name)
);
CREATE TABLE IF NOT EXISTS set_results (
  run_id TEXT, codec TEXT, op TEXT, metric TEXT, stratum TEXT, n_items INTEGER, value REAL, ci_low REAL,
  ci_high REAL, status TEXT, error TEXT, extra TEXT, fingerprint TEXT,
  PRIMARY KEY (run_id, codec, op, metric, stratum)
);
"""

#: tables every results database has (``identities`` is newer and optional for readers)
READ_TABLES = ("runs", "items", "coded", "results", "skipped", "codec_info")
#: tables newer than the first release: a writer creates them, a reader of an older file sees them empty
OPTIONAL_TABLES = ("identities", "set_results")

#: columns newer than their table, (table, column, SQL type), in the order they were added: a writer
#: adds the missing ones to an older file, readers of an older file see them as NULL
ADDED_COLUMNS = (("results", "compute_s", "REAL"), ("coded", "timing", "TEXT"))

#: the columns each write names (after run_id), so the order of a migrated table's columns does not matter
CODED_COLUMNS = ("item_id", "codec", "op", "nominal_kbps", "measured_kbps", "n_bytes", "encode_s",
                 "decode_s", "audio_s", "status", "error", "cache_key", "timing")
RESULT_COLUMNS = ("item_id", "codec", "op", "metric", "nominal_kbps", "measured_kbps", "value", "status",
                  "error", "extra", "compute_s")
SET_COLUMNS = ("codec", "op", "metric", "stratum", "n_items", "value", "ci_low", "ci_high", "status", "error",
               "extra", "fingerprint")

#: what each kind of identity keys: the column its rows are found by, and the tables holding them
IDENTITY_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "item": ("item_id", ("results", "skipped", "coded")),
    "codec": ("codec", ("results", "skipped", "coded", "codec_info", "set_results")),
    "metric": ("metric", ("results", "skipped", "set_results")),
}


class StoreError(UserError):
    """A results database that cannot be opened as asked (missing, not a database, not writable)."""


Row = Mapping[str, Any]


def _as_mapping(row: Any) -> Mapping[str, Any]:
    """A row as a mapping: the typed rows of ``bench.types`` (dataclasses) or plain dicts."""
    return asdict(row) if is_dataclass(row) and not isinstance(row, type) else row


def _nan_to_none(x: float | None) -> float | None:
    if x is None:
        return None
    return None if (isinstance(x, float) and not math.isfinite(x)) else x


class Store:
    """Thin wrapper over one SQLite file (``RUN_DIR/results.sqlite``)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """Open (and for writing, create) a results database.

        ``readonly=True`` is for readers (reports, baselines): it opens the file with SQLite's
        ``mode=ro`` URI, changes nothing on disk (no WAL switch, no schema), works on a
        read-only filesystem, and raises :class:`StoreError` when the file is missing or is not a
        bench results database.
        """
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self.conn = self._open_readonly(self.path)
            return
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise StoreError(f"{self.path.parent} is not a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)
            self._add_new_columns()
            self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET "
                              "value=excluded.value WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                              (str(SCHEMA_VERSION),))
            self.conn.commit()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable bench results database ({exc})") from None

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` in this file, in order (empty when there is no such table)."""
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def _add_new_columns(self) -> None:
        """Bring an older file's tables up to :data:`ADDED_COLUMNS` (old rows get NULL there)."""
        for table, column, sql_type in ADDED_COLUMNS:
            if column not in self.columns(table):
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

    @staticmethod
    def _open_readonly(path: Path) -> sqlite3.Connection:
        """A ``mode=ro`` connection to a bench results database; StoreError when it is missing or foreign."""
        if not path.is_file():
            raise StoreError(f"no results database at {path}" + (" (it is a folder)" if path.is_dir() else ""))
        uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
        try:
            try:
                conn = sqlite3.connect(uri, uri=True, timeout=60)
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            except sqlite3.OperationalError:
                # a WAL database in a folder we cannot write (read-only filesystem, another user's
                # run): SQLite cannot create the -shm file, so read the file as immutable
                conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=60)
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a bench results database ({exc})") from None
        missing = set(READ_TABLES) - tables
        if missing:
            conn.close()
            raise StoreError(f"{path}: not a bench results database (no table {', '.join(sorted(missing))})")
        return conn

    def close(self) -> None:
        """Close the connection (a writer first leaves a rollback-journal file, readable without write access)."""
        if not self.readonly:
            try:  # leave a plain rollback-journal file behind, readable without write access
                self.conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.DatabaseError:
                pass  # another connection still has it open; it stays in WAL mode
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        with self.conn:
            yield self.conn

    # --- writes ---------------------------------------------------------------------------
    def put_run(self, run_id: str, manifest: dict[str, Any]) -> None:
        """Insert or update a run's manifest (its creation time is kept)."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.transaction() as c:
            old = c.execute("SELECT created_utc FROM runs WHERE run_id=?", (run_id,)).fetchone()
            c.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?)",
                      (run_id, old[0] if old else created, json.dumps(manifest, sort_keys=True, default=str)))

    def put_items(self, run_id: str, items: Iterable[Any], durations_s: dict[str, float] | None = None) -> None:
        """Insert or update items (with measured durations where known)."""
        durations_s = durations_s or {}
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(run_id, it.id, it.dataset, it.split, it.domain, it.speaker, it.track,
                  durations_s.get(it.id, it.duration_s), it.transcript, json.dumps(it.extra, default=str))
                 for it in items],
            )

    def put_coded(self, run_id: str, row: Any) -> None:
        """Insert or update one coded row (a :class:`~bench.types.CodedRow` or a mapping of its fields)."""
        row = _as_mapping(row)
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO coded (run_id,{','.join(CODED_COLUMNS)}) "
                      f"VALUES (?,{','.join('?' * len(CODED_COLUMNS))})",
                      [run_id] + [_nan_to_none(row.get(k)) for k in CODED_COLUMNS])

    def put_results(self, run_id: str, rows: Iterable[Any]) -> None:
        """Insert or update result rows (:class:`~bench.types.ResultRow`s or mappings); NaN is stored as NULL."""
        rows = [_as_mapping(r) for r in rows]
        with self.transaction() as c:
            c.executemany(
                f"INSERT OR REPLACE INTO results (run_id,{','.join(RESULT_COLUMNS)}) "
                f"VALUES (?,{','.join('?' * len(RESULT_COLUMNS))})",
                [(run_id, r["item_id"], r["codec"], r["op"], r["metric"], r.get("nominal_kbps"),
                  _nan_to_none(r.get("measured_kbps")), _nan_to_none(r.get("value")),
                  r.get("status", "ok"), r.get("error"), json.dumps(r.get("extra") or {}, default=str),
                  _nan_to_none(r.get("compute_s")))
                 for r in rows],
            )

    def put_skipped(self, run_id: str, rows: Iterable[Any]) -> None:
        """Insert or update not-applicable rows (:class:`~bench.types.SkippedRow`s or mappings)."""
        rows = [_as_mapping(r) for r in rows]
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO skipped VALUES (?,?,?,?,?,?)",
                          [(run_id, r["item_id"], r["codec"], r["op"], r["metric"], r["reason"]) for r in rows])

    def put_codec_info(self, run_id: str, codec: str, info: dict[str, Any]) -> None:
        """Insert or update a codec's efficiency facts for a run."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO codec_info VALUES (?,?,?)",
                      (run_id, codec, json.dumps(info, sort_keys=True, default=str)))

    def put_set_results(self, run_id: str, rows: Iterable[Mapping[str, Any]],
                        scope: Iterable[tuple[str, str, str]] = ()) -> None:
        """Insert or update set-level rows; first delete this run's rows of each (codec, op, metric) in ``scope``.

        ``scope`` names what the caller recomputed as a whole, so a stratum that no longer exists
        leaves no row behind. NaN is stored as NULL; ``extra`` is JSON.
        """
        rows = list(rows)
        with self.transaction() as c:
            c.executemany("DELETE FROM set_results WHERE run_id=? AND codec=? AND op=? AND metric=?",
                          [(run_id, *key) for key in scope])
            c.executemany(
                f"INSERT OR REPLACE INTO set_results (run_id,{','.join(SET_COLUMNS)}) "
                f"VALUES (?,{','.join('?' * len(SET_COLUMNS))})",
                [(run_id, r["codec"], r["op"], r["metric"], r["stratum"], r.get("n_items"),
                  _nan_to_none(r.get("value")), _nan_to_none(r.get("ci_low")), _nan_to_none(r.get("ci_high")),
                  r.get("status", "ok"), r.get("error"), json.dumps(r.get("extra") or {}, default=str),
                  r.get("fingerprint"))
                 for r in rows])

    def put_identities(self, run_id: str, kind: str, fingerprints: dict[str, str]) -> None:
        """Record what a run's rows were computed from (name -> fingerprint for one kind)."""
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO identities VALUES (?,?,?,?)",
                          [(run_id, kind, name, fp) for name, fp in fingerprints.items()])

    def discard(self, run_id: str, kind: str, names: Iterable[str]) -> int:
        """Delete every row of this run computed from the named items, codecs or metrics; returns the count."""
        column, tables = IDENTITY_KINDS[kind]
        names = list(names)
        n = 0
        with self.transaction() as c:
            for table in tables:
                for name in names:
                    n += c.execute(f"DELETE FROM {table} WHERE run_id=? AND {column}=?", (run_id, name)).rowcount
            c.executemany("DELETE FROM identities WHERE run_id=? AND kind=? AND name=?",
                          [(run_id, kind, name) for name in names])
        return n

    # --- reads ----------------------------------------------------------------------------
    def identities(self, run_id: str, kind: str) -> dict[str, str]:
        """name -> fingerprint of the stored rows' inputs (empty for runs made before identities existed)."""
        if "identities" not in self.tables():
            return {}
        rows = self.conn.execute("SELECT name, fingerprint FROM identities WHERE run_id=? AND kind=?", (run_id, kind))
        return dict(rows.fetchall())

    def set_results(self, run_id: str) -> list[dict[str, Any]]:
        """A run's set-level rows (``extra`` parsed; NULL values as NaN), sorted; empty for an older file."""
        if "set_results" not in self.tables():
            return []
        cur = self.conn.execute(f"SELECT {','.join(SET_COLUMNS)} FROM set_results WHERE run_id=? "
                                "ORDER BY metric, codec, op, stratum", (run_id,))
        out = []
        for row in cur.fetchall():
            r = dict(zip(SET_COLUMNS, row))
            for k in ("value", "ci_low", "ci_high"):
                r[k] = math.nan if r[k] is None else float(r[k])
            try:
                r["extra"] = json.loads(r["extra"]) if r["extra"] else {}
            except json.JSONDecodeError:
                r["extra"] = {"raw": r["extra"]}
            out.append(r)
        return out

    def coded_rows(self, run_id: str) -> list[dict[str, Any]]:
        """A run's coded rows as dicts (no pandas needed)."""
        cur = self.conn.execute("SELECT * FROM coded WHERE run_id=?", (run_id,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def tables(self) -> set[str]:
        """Names of the tables in the file."""
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def names_in(self, run_id: str, kind: str) -> set[str]:
        """Distinct items, codecs or metrics that have rows in this run."""
        column, tables = IDENTITY_KINDS[kind]
        out: set[str] = set()
        present = self.tables()
        for table in tables:
            if table != "codec_info" and table in present:
                out |= {r[0] for r in self.conn.execute(f"SELECT DISTINCT {column} FROM {table} WHERE run_id=?", (run_id,))}
        return out

    def done_results(self, run_id: str) -> set[tuple[str, str, str, str]]:
        """Keys (item, codec, op, metric) already scored or skipped in this run: the resume set."""
        rows = self.conn.execute("SELECT item_id, codec, op, metric FROM results WHERE run_id=? "
                                 "UNION SELECT item_id, codec, op, metric FROM skipped WHERE run_id=?",
                                 (run_id, run_id)).fetchall()
        return {tuple(r) for r in rows}

    def coded_row(self, run_id: str, item_id: str, codec: str, op: str) -> dict[str, Any] | None:
        """The coded row of one pair, or None."""
        cur = self.conn.execute("SELECT * FROM coded WHERE run_id=? AND item_id=? AND codec=? AND op=?",
                                (run_id, item_id, codec, op))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row))

    def resolve_run_id(self, run_id: str | None = None) -> str:
        """``run_id`` when the file has it, else the latest run; StoreError when there is none or it is unknown."""
        ids = self.run_ids()
        if not ids:
            raise StoreError(f"{self.path}: contains no runs")
        if run_id is None:
            return ids[-1]
        if run_id not in ids:
            raise StoreError(f"{self.path}: no run {run_id!r}; runs here: {', '.join(ids)}")
        return run_id

    def run_ids(self) -> list[str]:
        """Run ids in the file, oldest first."""
        return [r[0] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY created_utc")]

    def manifest(self, run_id: str) -> dict[str, Any]:
        """A run's manifest (empty when the run is unknown; StoreError when it is damaged)."""
        row = self.conn.execute("SELECT manifest FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if not row:
            return {}
        try:
            manifest = json.loads(row[0])
        except (TypeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.path}: the manifest of run {run_id!r} is damaged ({exc})") from None
        if not isinstance(manifest, dict):
            raise StoreError(f"{self.path}: the manifest of run {run_id!r} is not a JSON object")
        return manifest

    def frame(self, table: str, run_id: str | None = None) -> Any:
        """A pandas DataFrame of one table (optionally one run)."""
        import pandas as pd

        if table not in {"runs", "items", "coded", "results", "skipped", "codec_info", "set_results"}:
            raise ValueError(f"unknown table {table!r}")
        if table == "set_results" and table not in self.tables():  # an older file: no set-level rows
            return pd.DataFrame(columns=["run_id", *SET_COLUMNS])
        if run_id is None:
            frame = pd.read_sql_query(f"SELECT * FROM {table}", self.conn)
        else:
            frame = pd.read_sql_query(f"SELECT * FROM {table} WHERE run_id=?", self.conn, params=(run_id,))
        for t, column, sql_type in ADDED_COLUMNS:  # an older file read as is: its newer columns are NULL
            if t == table and column not in frame.columns:
                frame[column] = math.nan if sql_type == "REAL" else None
        return frame

    def count(self, table: str, run_id: str) -> int:
        """Number of rows of one run in a table."""
        return self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id=?", (run_id,)).fetchone()[0]
