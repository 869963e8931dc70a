"""bench.config: data root and cache directory precedence (flag > env > config file > default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import ConfigError, cache_dir, config_path, data_root, data_root_source


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("BENCH_DATA_ROOT", "BENCH_CACHE_DIR", "BENCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def test_defaults_follow_xdg(tmp_path):
    assert config_path() == tmp_path / "xdg-config" / "bench" / "config.toml"
    assert data_root() == tmp_path / "xdg-data" / "bench" and data_root_source() == "default"
    assert cache_dir() == tmp_path / "xdg-cache" / "bench"


def test_precedence(tmp_path, monkeypatch):
    cfg = config_path()
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[data]\nroot = "~/from-config"\n[data.roots]\nlibritts = "/fast/LibriTTS"\n'
                   '[cache]\ndir = "/scratch/cache"\n')
    assert data_root() == Path.home() / "from-config"
    assert data_root(dataset="libritts") == Path("/fast/LibriTTS")
    assert "[data.roots] libritts" in data_root_source(dataset="libritts")
    assert cache_dir() == Path("/scratch/cache")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "env"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "envcache"))
    assert data_root(dataset="libritts") == tmp_path / "env" and data_root_source() == "BENCH_DATA_ROOT"
    assert cache_dir() == tmp_path / "envcache"
    assert data_root(tmp_path / "flag", "libritts") == tmp_path / "flag" and data_root_source("x") == "--root"
    assert cache_dir(tmp_path / "c") == tmp_path / "c"


def test_bench_config_env_and_bad_toml(tmp_path, monkeypatch):
    other = tmp_path / "other.toml"
    other.write_text("[data\nroot = ")
    monkeypatch.setenv("BENCH_CONFIG", str(other))
    assert config_path() == other
    with pytest.raises(ConfigError, match="other.toml: not valid TOML"):
        data_root()
