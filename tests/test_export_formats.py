"""``bench export --out``: a run's per-item rows as CSV, JSON Lines and Parquet, read back by pandas.

The run is a synthetic one written through the store's own writer (``bench.reports.synthetic``:
22 items, 4 codecs, failures and not-applicable metrics). Every format must give back, row for row,
the values of the results database, joined independently here with pandas; skipped rows come with
status ``skipped`` and their reason; the run is only read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import sqlite3
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main as bench_main
from bench.errors import UserError
from bench.export import ROW_COLUMNS, ROW_FORMATS, export_rows
from bench.store import Store


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run with codec provenance in its manifest and identities, plus compute_s and timing."""
    from bench.reports.synthetic import make_run

    run = make_run(tmp_path_factory.mktemp("rows") / "run", write_recon=False)
    with Store(run / "results.sqlite") as store:
        run_id = store.resolve_run_id()
        manifest = store.manifest(run_id)
        manifest["codec_fingerprints"] = {"opus": "fp-opus-1234"}
        manifest["codecs"] = {"mp3": {"checkpoint_hash": "lame 3.100"}}
        store.put_run(run_id, manifest)
        store.put_identities(run_id, "codec", {"mp3": "fp-mp3-5678", "opus": "stale"})
        store.conn.execute("UPDATE results SET compute_s = 0.25 WHERE metric = 'si_sdr'")
        store.conn.execute("UPDATE coded SET timing = 'per item'")
        store.conn.commit()
    return run


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = bench_main(["export", *argv])
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def expected_rows(run: Path, include_skipped: bool = True) -> pd.DataFrame:
    """The rows the export should give, joined here with pandas from the tables themselves."""
    with sqlite3.connect(run / "results.sqlite") as c:
        read = {t: pd.read_sql_query(f"SELECT * FROM {t}", c) for t in ("results", "skipped", "items", "coded",
                                                                      "codec_info")}
    results = read["results"].drop(columns=["run_id"])
    frames = [results]
    if include_skipped:
        skipped = read["skipped"].drop(columns=["run_id"]).rename(columns={"reason": "error"})
        skipped["status"] = "skipped"
        frames.append(skipped)
    rows = pd.concat(frames, ignore_index=True)
    coded = read["coded"].drop(columns=["run_id", "status", "error", "cache_key"]).rename(columns={"nominal_kbps": "c_nominal",
                                                                    "measured_kbps": "c_measured"})
    rows = rows.merge(read["items"].drop(columns=["run_id", "extra"]), on="item_id", how="left")
    rows = rows.merge(coded, on=["item_id", "codec", "op"], how="left")
    skipped_mask = rows["status"] == "skipped"
    rows.loc[skipped_mask, "nominal_kbps"] = rows.loc[skipped_mask, "c_nominal"]
    rows.loc[skipped_mask, "measured_kbps"] = rows.loc[skipped_mask, "c_measured"]
    hashes = {r.codec: json.loads(r.info).get("checkpoint_hash") for r in read["codec_info"].itertuples()}
    rows["checkpoint_hash"] = rows["codec"].map(hashes)
    return rows.sort_values(["codec", "op", "item_id", "metric"]).reset_index(drop=True)


def read_back(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False, precise_float=True)  # exact floats
    return pd.read_parquet(path)


def assert_same_cell(got, want, where: str) -> None:
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if missing(want):
        assert missing(got), where
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert float(got) == float(want), where  # exact: the files keep every float bit
    else:
        assert str(got) == str(want), where


@pytest.mark.parametrize("fmt", ROW_FORMATS)
def test_rows_round_trip_through_pandas(run_dir, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"rows.{fmt}"
    summary = export_rows(run_dir, out)  # the format from the name
    want = expected_rows(run_dir)
    with sqlite3.connect(run_dir / "results.sqlite") as c:
        n_results, n_skipped = (c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("results", "skipped"))
    assert (summary.results, summary.skipped) == (n_results, n_skipped) and n_skipped > 0
    got = read_back(out, fmt)
    assert list(got.columns) == [name for name, _ in ROW_COLUMNS]
    assert len(got) == len(want) == n_results + n_skipped
    compared = ["item_id", "codec", "op", "metric", "value", "status", "error", "nominal_kbps", "measured_kbps",
                "compute_s", "dataset", "split", "domain", "speaker", "duration_s", "n_bytes", "encode_s",
                "decode_s", "timing", "checkpoint_hash"]
    for i in range(len(want)):
        for col in compared:
            assert_same_cell(got.at[i, col], want.at[i, col], f"{fmt} row {i} {col}")
    failed = got[got["status"] == "failed"]
    assert len(failed) >= 1 and failed["value"].isna().all() and failed["error"].notna().all()
    skipped = got[got["status"] == "skipped"]
    assert skipped["value"].isna().all() and skipped["error"].str.contains("applies to").all()
    fingerprints = dict(zip(got["codec"], got["codec_fingerprint"]))
    assert fingerprints["opus"] == "fp-opus-1234"  # the manifest's, over a stale identity
    assert fingerprints["mp3"] == "fp-mp3-5678"  # an identity where the manifest has none
    assert got.loc[got["metric"] == "si_sdr", "compute_s"].eq(0.25).all()


def test_parquet_column_types(run_dir, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    export_rows(run_dir, tmp_path / "rows.pq")
    schema = pq.read_schema(tmp_path / "rows.pq")
    types = {"str": pa.string(), "float": pa.float64(), "int": pa.int64()}
    assert [(f.name, f.type) for f in schema] == [(n, types[k]) for n, k in ROW_COLUMNS]


def test_no_skipped_leaves_out_the_not_applicable_rows(run_dir, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    rc, stdout, err = run_cli(capsys, str(run_dir), "--out", str(out), "--no-skipped")
    assert rc == 0, err
    got = pd.read_csv(out)
    assert len(got) == len(expected_rows(run_dir, include_skipped=False))
    assert "skipped" not in set(got["status"]) and "0 skipped" in stdout


def test_stdout_jsonl_and_summary_on_stderr(run_dir, capsys):
    rc, out, err = run_cli(capsys, str(run_dir), "--out", "-", "--format", "jsonl")
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(expected_rows(run_dir))
    assert all(list(row) == [n for n, _ in ROW_COLUMNS] for row in lines)
    assert "exported" in err and "to stdout" in err and "exported" not in out


def test_an_older_file_without_the_newer_columns(run_dir, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(run_dir / "results.sqlite", old / "results.sqlite")
    with sqlite3.connect(old / "results.sqlite") as c:
        c.execute("ALTER TABLE results DROP COLUMN compute_s")
        c.execute("ALTER TABLE coded DROP COLUMN timing")
    buf = io.StringIO()
    export_rows(old, "-", "csv", stdout=buf)
    got = pd.read_csv(io.StringIO(buf.getvalue()))
    assert got["compute_s"].isna().all() and got["timing"].isna().all()
    assert len(got) == len(expected_rows(run_dir))


def test_read_only_run_folder_is_read_and_left_unchanged(run_dir, tmp_path):
    ro = tmp_path / "ro"
    shutil.copytree(run_dir, ro)
    db = ro / "results.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    listing = sorted(p.name for p in ro.iterdir())
    db.chmod(stat.S_IRUSR | stat.S_IRGRP)
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        summary = export_rows(ro, tmp_path / "rows.jsonl")
        assert summary.results > 0
        assert sorted(p.name for p in ro.iterdir()) == listing  # no journal, no -wal/-shm
    finally:
        ro.chmod(stat.S_IRWXU)
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_missing_pyarrow_is_one_line_naming_the_extra(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "rows.parquet"
    rc, _, err = run_cli(capsys, str(run_dir), "--out", str(out))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "pyarrow" in err and "bench[parquet]" in err
    assert not out.exists()


def test_out_never_overwrites_the_results_database(run_dir, tmp_path, capsys):
    db = run_dir / "results.sqlite"
    before = db.read_bytes()
    for target in (db, run_dir / "." / "results.sqlite", run_dir / "results.sqlite-wal"):
        rc, _, err = run_cli(capsys, str(run_dir), "--out", str(target), "--format", "csv")
        assert rc == 2 and "results database" in err, err
    link = tmp_path / "link.csv"
    link.symlink_to(db)
    rc, _, err = run_cli(capsys, str(db), "--out", str(link))
    assert rc == 2 and "results database" in err
    assert db.read_bytes() == before


BAD = [
    ("unknown-format", ["--out", "{tmp}/rows.csv", "--format", "xml"], "invalid choice: 'xml'"),
    ("no-output", [], "--out FILE"),
    ("format-without-out", ["--format", "csv"], "give --out"),
    ("no-skipped-without-out", ["--no-skipped", "--audio", "{tmp}/a"], "give --out"),
    ("cache-without-audio", ["--out", "{tmp}/r.csv", "--cache", "{tmp}"], "--cache applies"),
    ("parquet-to-stdout", ["--out", "-", "--format", "parquet"], "stdout"),
    ("stdout-without-format", ["--out", "-"], "give --format"),
    ("unknown-suffix", ["--out", "{tmp}/rows.txt"], "give --format"),
    ("out-is-folder", ["--out", "{tmp}"], "folder"),
    ("unknown-run-id", ["--out", "{tmp}/r.csv", "--run-id", "nope"], "no run 'nope'"),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_arguments_are_one_line_exit_2(run_dir, tmp_path, capsys, argv, needle):
    rc, out, err = run_cli(capsys, str(run_dir), *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert not list(tmp_path.glob("r*.*"))


def test_library_errors(run_dir, tmp_path):
    with pytest.raises(UserError, match="unknown format 'xml'"):
        export_rows(run_dir, tmp_path / "rows.csv", "xml")
    with pytest.raises(UserError, match="no such folder"):
        export_rows(tmp_path / "nowhere", tmp_path / "rows.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no results database"):
        export_rows(empty, tmp_path / "rows.csv")
    assert not (tmp_path / "rows.csv").exists()
