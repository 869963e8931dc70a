"""``--engine ray`` on a real local Ray cluster (``ray start --head`` on loopback): the same rows as the
local engine, worker processes killed mid-run (an actor restarted and its job retried, a scoring task
retried, a pair whose retries run out failing with its reason), and resume on the cluster.

One cluster serves the module; it is torn down by killing the processes of its own session (the
``ray start`` we started and its children), never by name, so another Ray on the machine is left alone.
The head listens on loopback only, with a short temp folder of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from bench.errors import UserError  # noqa: E402
from bench.pipeline.ray_engine import RayEngine, gpu_share  # noqa: E402
from bench.pipeline.run import run_benchmark  # noqa: E402
from bench.types import RunConfig  # noqa: E402

ITEMS = ["speech-en-us-male", "speech-en-gb-female", "music-drums"]  # demo items (two speech, one music)
CODECS = "opus@6,dac@1,dac@2"  # dac: the shipped dac_small checkpoint
METRICS = "si_sdr,mel_distance,stoi"
START_TIMEOUT_S = 90

pytestmark = pytest.mark.timeout(600)  # a wedged cluster fails the test, never the whole CI run


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the ``ray start`` we started leads it; Ray's workers stay in it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _stop(proc: subprocess.Popen, sid: int) -> None:
    """SIGTERM, then SIGKILL, every process of the cluster's session (ours only, by id)."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in _session_pids(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while _session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _session_pids(sid):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A two-CPU Ray head on 127.0.0.1 with free ports; yields its address; stopped even when a test fails."""
    import tempfile

    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix sockets live under it
    log = tmp_path_factory.mktemp("ray") / "ray-start.log"
    env_extra = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep the node on loopback (Ray would pick eth0)
                 "RAY_USAGE_STATS_ENABLED": "0",
                 # a token another Ray run left in ~/.ray/auth_token would be sent to this head, which has none
                 "RAY_AUTH_MODE": "disabled"}
    saved = {k: os.environ.get(k) for k in env_extra}
    os.environ.update(env_extra)  # the driver (this process and the CLI's) sees the same settings
    from ray._private import ray_constants

    # ray read the variable when it was imported (above): without this, ray.init would swap 127.0.0.1
    # for this machine's outward address, where the loopback-only head does not listen
    saved_cluster, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    port, *others = _free_ports(7)
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port", "--object-manager-port"]
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin if ray_bin.exists() else shutil.which("ray")), "start", "--head", "--block",
           "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
           "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir,
           *[a for name, p in zip(names, others) for a in (name, str(p))]]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc, proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _config(tmp: Path, name: str, **kw) -> RunConfig:
    (tmp / "items.txt").write_text("\n".join(ITEMS) + "\n")
    return RunConfig(codecs=CODECS, dataset="demo", metrics=METRICS, item_ids=ITEMS, out_dir=str(tmp / name),
                     cache_dir=str(tmp / f"cache-{name}"), workers=2, device="cpu", progress=False, **kw)


def _rows(run_dir: Path, table: str = "results") -> dict[tuple, tuple]:
    cols = {"results": "value, status, error, measured_kbps", "coded": "n_bytes, measured_kbps, status, cache_key"}
    metric = "metric" if table == "results" else "'-'"
    with sqlite3.connect(run_dir / "results.sqlite") as c:
        got = c.execute(f"SELECT item_id, codec, op, {metric}, {cols[table]} FROM {table}").fetchall()
    return {r[:4]: r[4:] for r in got}


@pytest.fixture(scope="module")
def ray_run(cluster, tmp_path_factory) -> Path:
    """The benchmark run once on the cluster (several tests read it; none changes it)."""
    tmp = tmp_path_factory.mktemp("ray-run")
    return run_benchmark(_config(tmp, "run", engine="ray", address=cluster))


def test_ray_rows_equal_local_rows(ray_run, tmp_path):
    local = run_benchmark(_config(tmp_path, "local", engine="local"))
    got, want = _rows(ray_run), _rows(local)
    assert len(want) == 3 * 3 * 3 - 3  # items x points x metrics, less stoi on the music item (skipped)
    assert got.keys() == want.keys()
    for key, (value, status, error, kbps) in want.items():
        assert status == "ok", (key, error)
        assert got[key][1:] == (status, error, kbps), key  # measured kbps identical: the same bitstreams
        assert abs(got[key][0] - value) <= 1e-6, (key, got[key][0], value)
    coded_ray, coded_local = _rows(ray_run, "coded"), _rows(local, "coded")
    assert coded_ray == coded_local  # bytes, kbps and cache keys (so codec fingerprints) identical
    manifest = json.loads((ray_run / "manifest.json").read_text())
    assert manifest["codec_fingerprints"] == json.loads((local / "manifest.json").read_text())["codec_fingerprints"]
    timing = manifest["timing"]
    assert timing["engine"] == "ray" and timing["cluster"]["cpus"] == 2 and timing["cluster"]["nodes"] == 1
    assert set(timing["codec_actors"]) == {"opus", "dac"}


def test_resume_on_ray_codes_nothing_and_restores_lost_rows(ray_run, cluster, tmp_path):
    run_dir = tmp_path / ray_run.name  # the same run id (the folder's name), in a copy this test may change
    shutil.copytree(ray_run, run_dir)
    before = _rows(run_dir)
    lost = ITEMS[1]
    with sqlite3.connect(run_dir / "results.sqlite") as c:  # as if the run had been killed before this item
        c.execute("DELETE FROM results WHERE item_id=?", (lost,))
        c.execute("DELETE FROM coded WHERE item_id=?", (lost,))
    cache = Path(_config(ray_run.parent, "run").cache_dir)
    entries = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    cfg = dataclasses.replace(_config(ray_run.parent, "run", engine="ray", address=cluster), out_dir=str(run_dir))
    run_benchmark(cfg)
    assert _rows(run_dir) == before  # the lost item's rows are back, with the same values
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == entries  # all from the cache
    run_benchmark(cfg)  # nothing left to do
    assert _rows(run_dir) == before
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]
    assert counts["results"] == len(before) and counts["coded"] == 3 * 3


PLUGIN = '''"""Test plugin: a codec and a metric that SIGKILL the Ray worker process running them."""

import os
import signal
from pathlib import Path

from bench.api import MetricSpec, register_codec, register_metric
from bench.codecs.opus import OpusCodec

MARKS = Path({marks!r})
DOOMED = {doomed!r}


def first_time(name):
    """True for exactly one caller, whatever the process (an exclusive create)."""
    try:
        os.close(os.open(MARKS / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class OpusDiesOnce(OpusCodec):
    """Opus whose first encode kills its process (the codec actor): the actor restarts, the job is retried."""

    name = "opus_dies_once"

    def encode(self, wav, operating_point):
        if first_time("codec-died"):
            die()
        return super().encode(wav, operating_point)


def peak_error_dies(preds, target, *, sample_rate_hz=None, items=None, **options):
    """max |preds - target|; its first call kills its worker, and every call on the doomed item does."""
    if any(item.id == DOOMED for item in items or []):
        (MARKS / f"doomed-{{os.getpid()}}").touch()
        die()
    if first_time("metric-died"):
        die()
    return (preds.double() - target.double()).abs().amax(dim=-1)


register_codec("opus_dies_once", OpusDiesOnce, in_all=False)
register_metric(MetricSpec("peak_error_dies", peak_error_dies, higher_is_better=False, unit="FS",
                           sample_rate_hz=None, valid_range=(0.0, 2.0), default=False, source="tests"))
'''


def test_killed_workers_are_retried_and_exhausted_retries_fail_the_pair(cluster, tmp_path):
    from bench.pipeline.ray_engine import SCORE_RETRIES

    marks = tmp_path / "marks"
    marks.mkdir()
    doomed = ITEMS[2]
    plugin = tmp_path / "dying.py"
    plugin.write_text(PLUGIN.format(marks=str(marks), doomed=doomed))
    (tmp_path / "items.txt").write_text("\n".join(ITEMS) + "\n")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "BENCH_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--plugin", str(plugin), "run", "--engine", "ray", "--address", cluster,
         "--codecs", "opus_dies_once@6,opus@12", "--metrics", "si_sdr,peak_error_dies", "--dataset", "demo",
         "--items", str(tmp_path / "items.txt"), "--workers", "2", "--device", "cpu", "--no-progress",
         "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (marks / "codec-died").exists() and (marks / "metric-died").exists()  # both kills happened
    # the doomed item's two pairs (one per codec), each tried 1 + SCORE_RETRIES times, each try its own process
    assert len(list(marks.glob("doomed-*"))) == 2 * (1 + SCORE_RETRIES)
    rows = _rows(out)
    expected = {(i, c, op, m) for i in ITEMS for c, op in (("opus_dies_once", "6"), ("opus", "12"))
                for m in ("si_sdr", "peak_error_dies")}
    assert rows.keys() == expected  # every row, once (the primary key forbids a second)
    for (item, codec, op, metric), (value, status, error, _) in rows.items():
        if item == doomed:
            assert status == "failed" and "scoring crashed" in error, (item, codec, metric, error)
        else:
            assert status == "ok", (item, codec, metric, error)
            assert value == value  # not NaN
    with sqlite3.connect(out / "results.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM coded WHERE status != 'ok'").fetchone() == (0,)


def test_gpu_shares_pack_every_actor():
    assert gpu_share(1, 8) == 1.0 and gpu_share(8, 8) == 1.0
    assert gpu_share(3, 2) == 0.5  # two on one GPU, one on the other (2/3 each would leave one waiting)
    assert gpu_share(3, 1) == pytest.approx(1 / 3)
    with pytest.raises(UserError, match="has 0 GPUs"):
        gpu_share(2, 0)


def test_unreachable_address_is_one_line(monkeypatch):
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray connection is open in this process")
    (port,) = _free_ports(1)  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        RayEngine(2, address=f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 10  # not Ray's own minutes of retrying
    with pytest.raises(UserError, match="expected auto or HOST:PORT"):
        RayEngine(2, address="nohostport")


def test_missing_ray_names_the_extra(monkeypatch):
    from bench.deps import MissingBackendError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingBackendError, match=r"pip install 'bench\[ray\]'"):
        RayEngine(2)
