"""Numbers you can trust: resume keyed by everything that decides a value, a cache that checks
what it serves, truncated decodes that fail, honest exit codes, and workers that die with the run.

Each test here reproduces a way a wrong number could look right (or a run could mislead), and
fails on the code before the fix.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.cache import ReconCache
from bench.cli import main as bench_main
from bench.codecs.base import Encoded, register_codec
from bench.codecs.pcm import Pcm16Codec
from bench.registry import CODECS
from bench.pipeline.identity import RunMismatchError
from bench.pipeline.run import run_benchmark
from bench.types import RunConfig

# --- test codecs (a user's plugin codecs, registered the way a plugin would) -----------------------


class GainCodec(Pcm16Codec):
    """16-bit PCM that applies a gain: a codec with a parameter and code a user may change."""

    name = "test_gain"
    GAIN = 1.0  # the factory reads it, so a test can "change the codec's parameters"

    def __init__(self, checkpoint: str | None = None):
        super().__init__(checkpoint)
        self.gain = float(type(self).GAIN)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        return super().decode(encoded) * self.gain


class TruncatingCodec(Pcm16Codec):
    """Decodes only the first half of the signal: a broken codec whose output must never score."""

    name = "test_trunc"

    def decode(self, encoded: Encoded) -> torch.Tensor:
        y = super().decode(encoded)
        return y[..., : y.shape[-1] // 2]


class BrokenCodec(Pcm16Codec):
    """Fails to load, as a codec with an unloadable checkpoint does."""

    name = "test_broken"

    def _load(self) -> None:
        raise RuntimeError("weights file is damaged")


for _cls in (GainCodec, TruncatingCodec, BrokenCodec):
    if _cls.name not in CODECS:
        register_codec(_cls.name, _cls, in_all=False)


# --- helpers ---------------------------------------------------------------------------------------


def _rows(run_dir: Path, sql: str = "SELECT item_id, codec, op, metric, value, status, error FROM results") -> list:
    with sqlite3.connect(run_dir / "results.sqlite") as c:
        return sorted(c.execute(sql).fetchall())


def _values(run_dir: Path, metric: str) -> dict[str, float]:
    return {r[0]: r[4] for r in _rows(run_dir) if r[3] == metric}


@pytest.fixture()
def folder(tmp_path) -> Path:
    """Two short tones in a folder dataset (speech domain, 16 kHz)."""
    d = tmp_path / "audio"
    d.mkdir()
    t = np.arange(16000) / 16000
    for i, f0 in enumerate((220.0, 330.0)):
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * np.sin(2 * np.pi * 3 * f0 * t)
        sf.write(str(d / f"tone{i}.wav"), x.astype(np.float32), 16000, subtype="PCM_16")
    return d


def _cfg(folder: Path, out: Path, **kw) -> RunConfig:
    base = dict(codecs="test_gain", dataset="folder", root=str(folder), dataset_options={"domain": "speech"},
                metrics="si_sdr,mel_distance", out_dir=str(out), workers=1, progress=False)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture()
def gain():
    """Set GainCodec's gain for one test and restore it."""
    old = GainCodec.GAIN
    yield lambda g: setattr(GainCodec, "GAIN", g)
    GainCodec.GAIN = old


# --- 1. resume keyed by everything that decides a value ---------------------------------------------


@pytest.mark.parametrize("change", [{"loudness_lufs": -16.0}, {"channel_policy": "first"}, {"align": "none"}])
def test_rerun_with_other_settings_is_refused_and_changes_nothing(folder, tmp_path, change):
    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out))
    before = _rows(out)
    manifest_before = (out / "manifest.json").read_text()
    with pytest.raises(RunMismatchError) as err:
        run_benchmark(_cfg(folder, out, **change))
    name = next(iter(change))
    assert name in str(err.value)
    assert _rows(out) == before
    assert (out / "manifest.json").read_text() == manifest_before  # the manifest still tells the truth


def test_rerun_with_other_settings_exits_2_with_one_line(folder, tmp_path, capsys):
    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out))
    code = bench_main(["run", "--codecs", "test_gain", "--dataset", "folder", "--root", str(folder),
                       "--dataset-opt", "domain=speech", "--metrics", "si_sdr,mel_distance", "--out", str(out),
                       "--workers", "1", "--no-progress", "--loudness", "-16"])
    err = capsys.readouterr().err
    assert code == 2
    assert "loudness_lufs" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1


def test_changed_audio_file_is_rescored(folder, tmp_path, gain, capsys):
    out = tmp_path / "run"
    gain(0.9)  # not lossless, so a changed input changes the scores (pcm16 alone is exact at the item's rate)
    run_benchmark(_cfg(folder, out))
    before = _values(out, "mel_distance")
    t = np.arange(16000) / 16000
    noisy = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.random.default_rng(0).standard_normal(16000)
    sf.write(str(folder / "tone0.wav"), np.clip(noisy, -1, 1).astype(np.float32), 16000, subtype="PCM_16")
    run_benchmark(_cfg(folder, out))
    after = _values(out, "mel_distance")
    changed = [k for k in after if after[k] != before[k]]
    assert len(changed) == 1 and "tone0" in changed[0]  # only the changed file, and it was recomputed
    assert "item(s) changed" in capsys.readouterr().err


def test_changed_codec_parameters_recode_instead_of_serving_the_cache(folder, tmp_path, gain, capsys):
    out = tmp_path / "run"
    gain(1.0)
    run_benchmark(_cfg(folder, out))
    sdr_unity = _values(out, "si_sdr")
    mel_unity = _values(out, "mel_distance")
    gain(0.5)  # the user changes their codec: halving the output leaves SI-SDR but not the mel distance
    run_benchmark(_cfg(folder, out))
    assert "codec(s) changed" in capsys.readouterr().err
    mel_half = _values(out, "mel_distance")
    assert all(mel_half[k] > mel_unity[k] + 0.5 for k in mel_unity), (mel_unity, mel_half)
    # and a fresh run with the old parameters finds its old reconstructions again (same key)
    gain(1.0)
    fresh = tmp_path / "fresh"
    run_benchmark(_cfg(folder, fresh))
    assert _values(fresh, "si_sdr") == pytest.approx(sdr_unity)


def test_changed_codec_code_changes_its_fingerprint(monkeypatch):
    codec = GainCodec().load("cpu")
    fp = codec.fingerprint
    monkeypatch.setattr(GainCodec, "adapter_version", "2")
    assert codec.fingerprint != fp
    monkeypatch.undo()
    import bench.fingerprint as fpmod

    real = fpmod.module_fingerprint
    monkeypatch.setattr(fpmod, "module_fingerprint",
                        lambda name: "edited" if name == __name__ else real(name))
    assert codec.fingerprint != fp  # an edit to the module defining the codec class


def test_source_fingerprint_ignores_docstrings_but_not_code(tmp_path, monkeypatch):
    from bench.fingerprint import module_fingerprint

    mod = tmp_path / "fp_probe_mod.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    mod.write_text('"""Doc."""\n\ndef f(x):\n    """Say what."""\n    return x * 2  # comment\n')
    import importlib

    import fp_probe_mod  # noqa: F401

    first = module_fingerprint("fp_probe_mod")
    mod.write_text('"""Other doc."""\n\ndef f(x):\n    """Say more."""\n    return x * 2\n')
    os.utime(mod, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert module_fingerprint("fp_probe_mod") == first
    mod.write_text('"""Doc."""\n\ndef f(x):\n    return x * 3\n')
    os.utime(mod, ns=(time.time_ns(), time.time_ns() + 20_000_000))
    assert module_fingerprint("fp_probe_mod") != first
    importlib.invalidate_caches()


def test_changed_metric_version_is_rescored(folder, tmp_path, monkeypatch, capsys):
    from bench.registry import METRICS

    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out))
    with sqlite3.connect(out / "results.sqlite") as c:  # mark the stored values so a kept row shows
        c.execute("UPDATE results SET value = 12345 WHERE metric='mel_distance'")
    monkeypatch.setattr(METRICS.get("mel_distance"), "version", "test-bumped")
    run_benchmark(_cfg(folder, out))
    assert "metric(s) changed" in capsys.readouterr().err
    assert all(v != 12345 for v in _values(out, "mel_distance").values())
    with sqlite3.connect(out / "results.sqlite") as c:  # si_sdr did not change: kept, not recomputed
        n = c.execute("SELECT COUNT(*) FROM results WHERE metric='si_sdr'").fetchone()[0]
    assert n == 2


def test_refresh_recodes_and_rescores(folder, tmp_path):
    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out))
    with sqlite3.connect(out / "results.sqlite") as c:
        c.execute("UPDATE results SET value = 12345")
    bins = [ReconCache().paths(k)["bin"] for (k,) in _rows(out, "SELECT cache_key FROM coded")]
    mtimes = {p: p.stat().st_mtime_ns for p in bins}
    time.sleep(0.01)
    run_benchmark(_cfg(folder, out, refresh=True))
    assert all(v != 12345 for v in _values(out, "si_sdr").values())
    touched = [p for p in bins if p.exists() and p.stat().st_mtime_ns != mtimes[p]]
    assert len(touched) >= 2


# --- 2. the reconstruction cache checks what it serves ------------------------------------------------


def _entry(tmp_path) -> tuple[ReconCache, str, np.ndarray, bytes]:
    cache = ReconCache(tmp_path / "cache")
    audio = (0.5 * np.sin(np.arange(2000) / 7.0)).astype(np.float32)[None]
    bitstream = bytes(range(256)) * 4
    cache.put("ab" + "0" * 62, audio, 16000, bitstream, {"encode_s": 0.1})
    return cache, "ab" + "0" * 62, audio, bitstream


def test_cache_round_trip_is_exact_enough(tmp_path):
    cache, key, audio, bitstream = _entry(tmp_path)
    got = cache.get(key)
    assert got is not None and got[2] == bitstream and got[1] == 16000
    assert np.max(np.abs(got[0] - audio)) < 1e-6
    assert cache.problems == []


@pytest.mark.parametrize("damage", ["truncate_bin", "edit_gain", "truncate_flac", "garbage_json"])
def test_damaged_cache_entry_is_not_served(tmp_path, damage):
    cache, key, _, bitstream = _entry(tmp_path)
    p = cache.paths(key)
    if damage == "truncate_bin":
        p["bin"].write_bytes(bitstream[: len(bitstream) // 2])  # measured kbps would halve
    elif damage == "edit_gain":
        meta = json.loads(p["json"].read_text())
        meta["gain"] = 2.0
        p["json"].write_text(json.dumps(meta))
    elif damage == "truncate_flac":
        p["flac"].write_bytes(p["flac"].read_bytes()[:-100])
    else:
        p["json"].write_text("{not json")
    assert cache.get(key) is None
    assert len(cache.problems) == 1
    assert not cache.has(key)  # removed, so the runner writes a good entry again


def test_runner_recomputes_a_truncated_bitstream_and_says_so(folder, tmp_path, capsys):
    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out))
    kbps = _rows(out, "SELECT item_id, measured_kbps FROM coded")
    key = _rows(out, "SELECT cache_key FROM coded")[0][0]
    victim = ReconCache().paths(key)["bin"]  # the entry this run used (the cache is shared by the session)
    victim.write_bytes(victim.read_bytes()[:100])
    again = tmp_path / "again"
    run_benchmark(_cfg(folder, again))
    assert "damaged cache entr" in capsys.readouterr().err
    assert _rows(again, "SELECT item_id, measured_kbps FROM coded") == kbps


def test_interrupted_writes_leave_no_temporary_files(tmp_path, monkeypatch):
    cache = ReconCache(tmp_path / "cache")
    key = "cd" + "1" * 62
    audio = np.zeros((1, 100), np.float32)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(OSError):
        cache.put(key, audio, 16000, b"xyz", {})
    monkeypatch.undo()
    assert list((tmp_path / "cache").rglob("*.tmp*")) == []
    # a file left by a writer that was killed (dead pid, older than a minute) is swept at the next write
    folder = tmp_path / "cache" / key[:2]
    stale = folder / f"{key}.tmp999999999.flac"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    cache.put(key, audio, 16000, b"xyz", {})
    assert not stale.exists()
    assert cache.get(key) is not None


# --- 3. a truncated decode fails instead of scoring as perfect -----------------------------------------


def test_truncated_decode_is_a_failed_pair(folder, tmp_path):
    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out, codecs="test_trunc"))
    got = _rows(out)
    assert got and all(status == "failed" for *_, status, _ in got)
    assert all("decoded" in err and "samples" in err for *_, err in got)
    assert all(v is None for _, _, _, _, v, _, _ in got)  # NaN, never a score


# --- 10. exit codes: nothing scored is not success ------------------------------------------------------


def test_run_where_every_pair_fails_exits_3_with_the_reason(folder, tmp_path, capsys):
    code = bench_main(["run", "--codecs", "test_broken", "--dataset", "folder", "--root", str(folder),
                       "--dataset-opt", "domain=speech", "--metrics", "si_sdr", "--out", str(tmp_path / "run"),
                       "--workers", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 3
    assert "0 results scored, 2 failed" in out
    assert "weights file is damaged" in out
    rows = _rows(tmp_path / "run")
    assert len(rows) == 2 and all(r[5] == "failed" for r in rows)  # the rows are still written


# --- 8. readers never write ---------------------------------------------------------------------------


def test_report_leaves_the_results_database_untouched(folder, tmp_path):
    from bench.reports.make import make_report

    out = tmp_path / "run"
    run_benchmark(_cfg(folder, out))
    db = out / "results.sqlite"
    before = (db.read_bytes(), sorted(p.name for p in out.iterdir()))
    make_report(out, tmp_path / "rep", formats=["md"], n_boot=200, with_audio=False)
    assert (db.read_bytes(), sorted(p.name for p in out.iterdir())) == before
    from bench.store import Store

    with Store(db, readonly=True) as store, pytest.raises(sqlite3.OperationalError):
        store.conn.execute("DELETE FROM results")


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/sbin/runuser").exists() and not Path("/sbin/runuser").exists(),
                    reason="needs root to run a reader as another user on a folder it cannot write")
def test_store_opens_read_only_where_it_cannot_write():
    """A reader without write access to the folder (as on a read-only filesystem) can open the database."""
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="bench-ro-"))  # pytest's tmp_path is private to root
    try:
        _check_read_only_open(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check_read_only_open(tmp_path: Path) -> None:
    from bench.store import Store

    d = tmp_path / "ro"
    d.mkdir()
    with Store(d / "results.sqlite") as s:
        s.put_run("r", {"x": 1})
    probe = tmp_path / "probe"
    (probe / "bench").mkdir(parents=True)
    for name in ("store.py", "errors.py"):
        (probe / "bench" / name).write_text((Path(__file__).parents[1] / "bench" / name).read_text())
    (probe / "bench" / "__init__.py").write_text("")
    for p in (tmp_path, d, probe, probe / "bench"):
        p.chmod(0o755)
    d.chmod(0o555)
    (d / "results.sqlite").chmod(0o444)
    code = f"import sys; sys.path.insert(0, {str(probe)!r}); from bench.store import Store; " \
           f"print(Store({str(d / 'results.sqlite')!r}, readonly=True).run_ids())"
    python = next((p for p in ("/usr/bin/python3", sys.executable) if os.access(p, os.X_OK)), sys.executable)
    res = subprocess.run(["runuser", "-u", "nobody", "--", python, "-S", "-c", code],
                         capture_output=True, text=True, timeout=60)
    d.chmod(0o755)
    if "Permission denied" in res.stderr and "python" in res.stderr.lower():
        pytest.skip("nobody cannot run this Python")
    assert res.returncode == 0, res.stderr
    assert "['r']" in res.stdout


# --- 9. metric workers die with their parent -----------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_killing_only_the_parent_leaves_no_worker(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--codecs", "opus@*", "--dataset", "demo",
                             "--metrics", "pesq_wb,stoi,mel_distance", "--workers", "2", "--no-progress",
                             "--out", str(tmp_path / "run"), "--refresh"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
            workers = [c for c in _children(proc.pid)
                       if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
            time.sleep(0.2)
        assert len(workers) >= 2, "the run never started its metric workers"
        everyone = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # as the OOM killer does: the parent only
        proc.wait(timeout=10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(c) for c in everyone):
            time.sleep(0.2)
        survivors = [c for c in everyone if _alive(c)]
        assert survivors == [], f"processes outlived their parent: {survivors}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
