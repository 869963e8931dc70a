"""Plugins from outside the package: the example of docs/plugins.md as written, three ways of naming a
plugin (--plugin, $BENCH_PLUGINS, an installed entry point), plugin metrics in spawned workers, and a
broken plugin as one line and exit code 2.

Plugins that load successfully are loaded in subprocesses only: a codec registered in this process
would join ``--codecs all`` for every later test.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.api as api
from bench import plugins
from bench.cli import build_parser, plugin_specs
from bench.cli import main as bench_main
from bench.registry import CODECS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
RUN = ["run", "--dataset", "demo", "--limit", "1", "--no-progress"]


def doc_block(marker: str) -> str:
    """The first ```python block after ``<!-- marker -->`` in docs/plugins.md, as written."""
    text = DOCS.read_text()
    assert f"<!-- {marker} -->" in text, f"docs/plugins.md lost its <!-- {marker} --> marker"
    after = text.split(f"<!-- {marker} -->", 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, f"no python block after <!-- {marker} -->"
    return match.group(1)


@pytest.fixture()
def codec_file(tmp_path) -> Path:
    path = tmp_path / "mulaw8.py"
    path.write_text(doc_block("example-plugin"))
    return path


@pytest.fixture()
def metric_file(tmp_path) -> Path:
    path = tmp_path / "peak.py"
    path.write_text(doc_block("example-metric"))
    return path


def run_bench(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``bench`` in a fresh process (no $BENCH_PLUGINS unless ``env`` sets it)."""
    full = {k: v for k, v in os.environ.items() if k != plugins.ENV_VAR}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def rows(out: Path, sql: str = "SELECT item_id, codec, op, metric, value, status, error FROM results") -> list:
    with sqlite3.connect(out / "results.sqlite") as c:
        return sorted(c.execute(sql).fetchall())


def check_mulaw_run(proc: subprocess.CompletedProcess, out: Path) -> None:
    assert proc.returncode == 0, proc.stderr
    got = rows(out)
    assert len(got) == 1, got
    _, codec, op, metric, value, status, error = got[0]
    assert (codec, op, metric, status, error) == ("mulaw8", "8bit", "si_sdr", "ok", None)
    assert 10.0 < value < 60.0, value  # lossy (8 bits, 16 kHz) but close: not identity, not noise
    (kbps,) = rows(out, "SELECT measured_kbps FROM coded")[0]
    assert abs(kbps - 128.0) < 1.0, kbps  # one byte per sample at 16 kHz, plus a small header


# --- the docs' example codec ------------------------------------------------------------------------


def test_docs_example_codec_round_trips(monkeypatch):
    """The example's bitstream is real: exact byte count, truncation detected, ~38 dB SNR."""
    monkeypatch.setattr(api, "register_codec", lambda name, factory, **kw: factory)
    namespace: dict = {}
    exec(compile(doc_block("example-plugin"), "mulaw8.py", "exec"), namespace)
    codec = namespace["MuLaw8Codec"]().load()
    wav = 0.5 * torch.randn(2, 1, 1600, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    data = codec.to_bytes(codec.encode(wav, "8bit"))
    header_only = codec.to_bytes(api.Encoded("mulaw8", "8bit", 16000, 1, 1600, 2, np.zeros(0, np.uint8)))
    assert len(data) == len(header_only) + 2 * 1600  # one byte per sample
    out = codec.decode(codec.from_bytes(data))
    ref = wav.clamp(-1, 1)
    assert out.shape == ref.shape and out.dtype == torch.float32
    snr_db = 10 * math.log10(float((ref**2).sum() / ((out - ref) ** 2).sum()))
    assert 30.0 < snr_db < 45.0, snr_db  # 8-bit mu-law: about 38 dB over a wide range of levels
    with pytest.raises(api.BitstreamError):
        codec.from_bytes(data[:-1])


def test_plugin_flag_runs_the_docs_example(codec_file, tmp_path):
    out = tmp_path / "run"
    proc = run_bench(*RUN, "--plugin", str(codec_file), "--codecs", "mulaw8", "--metrics", "si_sdr", "--out", str(out))
    check_mulaw_run(proc, out)


def test_env_var_runs_the_docs_example(codec_file, metric_file, tmp_path):
    out = tmp_path / "run"
    env = {plugins.ENV_VAR: os.pathsep.join([str(metric_file), str(codec_file)])}
    proc = run_bench(*RUN, "--codecs", "mulaw8", "--metrics", "si_sdr", "--out", str(out), env=env)
    check_mulaw_run(proc, out)


def test_plugin_option_before_and_after_the_subcommand(codec_file, metric_file):
    proc = run_bench("--plugin", str(metric_file), "ls", "codecs", "--plugin", codec_file.name, cwd=codec_file.parent)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("mulaw8"))
    assert "16000" in line and "8bit (128)" in line and "[plugin mulaw8.py]" in line
    assert not any(ln.startswith("pcm16") and "[plugin" in ln for ln in proc.stdout.splitlines())
    proc = run_bench("ls", "metrics", "--plugin", str(metric_file))
    assert re.search(r"^peak_error\s+lower\s+any\s+FS .*\[plugin .*peak\.py\]$", proc.stdout, re.M), proc.stdout


def test_every_subcommand_takes_the_plugin_option():
    parser = build_parser()
    args = parser.parse_args(["--plugin", "a", "--plugin", "b.py", "ls", "codecs", "--plugin", "c"])
    assert plugin_specs(args) == ["a", "b.py", "c"]
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert any("--plugin" in a.option_strings for a in p._actions), name


# --- an installed entry point -----------------------------------------------------------------------


def test_entry_point_plugins_are_found(tmp_path):
    """A distribution on the path with entry points in bench.plugins: a callable one and a module one."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "foo_mulaw.py").write_text(doc_block("example-plugin"))
    (site / "foo_plugin.py").write_text(
        "from bench.api import register_codec\n\n\n"
        "def register():\n"
        "    from foo_mulaw import MuLaw8Codec  # registers mulaw8 on import\n\n"
        "    class Foo8(MuLaw8Codec):\n"
        "        name = 'foo8'\n\n"
        "    register_codec('foo8', Foo8)\n")
    (site / "bar_plugin.py").write_text(doc_block("example-metric"))
    dist = site / "foo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: foo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bench.plugins]\nfoo = foo_plugin:register\nbar = bar_plugin\n")
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = run_bench("ls", "codecs", env={"PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr
    listed = {ln.split()[0]: ln for ln in proc.stdout.splitlines()[1:]}
    assert "foo8" in listed and "[plugin foo (foo_plugin:register)]" in listed["foo8"]
    assert "mulaw8" in listed and "pcm16" in listed
    proc = run_bench("ls", "metrics", env={"PYTHONPATH": path})
    assert re.search(r"^peak_error .*\[plugin bar \(bar_plugin\)\]$", proc.stdout, re.M), proc.stdout


# --- spawned workers ---------------------------------------------------------------------------------


def test_plugin_metric_is_found_by_spawned_workers(metric_file, tmp_path):
    """--workers 2 scores in spawn processes, which learn the plugin from the recorded $BENCH_PLUGINS."""
    out = tmp_path / "run"
    proc = run_bench("run", "--dataset", "demo", "--limit", "2", "--no-progress", "--workers", "2", "--plugin",
                 str(metric_file), "--codecs", "pcm16", "--metrics", "peak_error,si_sdr", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    got = [r for r in rows(out) if r[3] == "peak_error"]
    assert len(got) == 2, rows(out)
    for _, codec, _, _, value, status, error in got:
        assert (codec, status, error) == ("pcm16", "ok", None)
        assert 0.0 <= value < 0.01, value  # 16-bit PCM: a few LSBs at most (resampling included)


# --- loading rules, in process (plugins that register nothing) --------------------------------------


def test_a_plugin_is_loaded_once_and_recorded_for_children(tmp_path, monkeypatch):
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    marker = tmp_path / "imports.txt"
    plugin = tmp_path / "counting_plugin.py"
    plugin.write_text(f"with open({str(marker)!r}, 'a') as f:\n    f.write('x')\n")
    monkeypatch.chdir(tmp_path)
    assert plugins.load_plugins(["counting_plugin.py", str(plugin)]) == ["counting_plugin.py"]
    assert plugins.load_plugins([str(plugin)]) == []
    monkeypatch.setenv(plugins.ENV_VAR, str(plugin))
    assert plugins.load_plugins() == []
    assert marker.read_text() == "x"
    assert plugins.env_specs() == [str(plugin)]  # recorded once, as an absolute path


def test_a_failing_plugin_takes_back_what_it_registered(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    plugin = tmp_path / "half_plugin.py"
    plugin.write_text("from bench.api import register_codec\n"
                      "from bench.codecs.pcm import Pcm16Codec\n\n"
                      "register_codec('zz_half_plugin', type('Half', (Pcm16Codec,), {'name': 'zz_half_plugin'}))\n"
                      "raise RuntimeError('half done')\n")
    code = bench_main(["ls", "codecs", "--plugin", str(plugin)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"error: plugin {str(plugin)!r} failed to load: RuntimeError: half done"]
    assert "zz_half_plugin" not in CODECS.names()
    assert "pcm16" in CODECS.names() and CODECS.origin("pcm16") is None
    assert plugins.ENV_VAR not in os.environ


# --- broken plugins: one line, exit code 2 -------------------------------------------------------------


BROKEN = {
    "import_error": ("import no_such_module_for_bench_tests\n", "No module named 'no_such_module_for_bench_tests'"),
    "exception": ("raise ValueError('bad config')\n", "ValueError: bad config"),
    "user_error": ("from bench.api import UserError\nraise UserError('set MYLAB_ROOT first')\n",
                   "failed to load: set MYLAB_ROOT first"),
    "duplicate_codec": ("from bench.api import register_codec\nfrom bench.codecs.pcm import Pcm16Codec\n"
                        "register_codec('pcm16', type('P', (Pcm16Codec,), {}))\n",
                        "codec 'pcm16' is already registered by bench"),
    "duplicate_metric": ("import math\nfrom bench.api import MetricSpec, register_metric\n"
                         "register_metric(MetricSpec('si_sdr', math.fabs, True, 'dB', None))\n",
                         "metric 'si_sdr' is already registered by bench"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_one_line(case, tmp_path, monkeypatch, capsys):
    """In process (a failed plugin leaves nothing registered); the subprocess cases are below."""
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    source, needle = BROKEN[case]
    plugin = tmp_path / f"{case}.py"
    plugin.write_text(source)
    code = bench_main(["ls", "codecs", "--plugin", str(plugin)])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"error: plugin {str(plugin)!r}") and needle in lines[0], lines[0]
    assert out == ""  # nothing listed: the plugin is loaded before the command runs


def test_broken_plugin_from_the_environment_and_missing_ones(tmp_path):
    missing = tmp_path / "missing.py"
    for env, args, needle in [
        ({plugins.ENV_VAR: str(missing)}, ["ls", "codecs"], f"plugin {str(missing)!r}: no such file"),
        ({}, ["--plugin", "no_such_bench_plugin_module", "ls", "datasets"],
         "plugin 'no_such_bench_plugin_module' failed to load: ModuleNotFoundError"),
        ({}, ["ls", "metrics", "--plugin", str(tmp_path)], "is a folder, not a .py file"),
    ]:
        proc = run_bench(*args, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
        assert proc.stdout == ""


def test_two_plugins_with_one_name(metric_file, tmp_path):
    twin = tmp_path / "twin.py"
    twin.write_text(metric_file.read_text())
    proc = run_bench("--plugin", str(metric_file), "--plugin", str(twin), "ls", "metrics")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"error: plugin {str(twin)!r} failed to load: metric 'peak_error' is already "
                                   f"registered by plugin {str(metric_file)!r}; choose another name")


# --- identity ------------------------------------------------------------------------------------------


def test_a_plugin_codecs_fingerprint_follows_its_code(codec_file):
    """Editing the plugin's code changes the codec's fingerprint (the cache key); a comment does not."""
    probe = ("import sys; from bench.plugins import load_plugins; load_plugins([sys.argv[1]]); "
             "from bench.registry import CODECS; print(CODECS.get('mulaw8')().fingerprint)")

    def fingerprint() -> str:
        env = {k: v for k, v in os.environ.items() if k != plugins.ENV_VAR}
        proc = subprocess.run([sys.executable, "-c", probe, str(codec_file)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    original = codec_file.read_text()
    first = fingerprint()
    codec_file.write_text(original.replace("RATE_HZ, MU = 16_000, 255.0", "RATE_HZ, MU = 16_000, 255.0  # G.711"))
    assert fingerprint() == first
    codec_file.write_text(original.replace("MU = 16_000, 255.0", "MU = 16_000, 100.0"))
    assert fingerprint() != first
