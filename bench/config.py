"""Where bench keeps data and caches: command-line flag, environment variable, config file, default.

Precedence, highest first:

1. an explicit value (the ``--root`` flag, a function argument);
2. an environment variable: ``BENCH_DATA_ROOT`` (datasets), ``BENCH_CACHE_DIR`` (caches);
3. the config file: ``$BENCH_CONFIG`` if set, else ``$XDG_CONFIG_HOME/bench/config.toml``
   (``~/.config/bench/config.toml``)::

       [data]
       root = "/data/audio"          # every dataset looks under here ...

       [data.roots]
       libritts = "/fast/LibriTTS"   # ... unless it has its own entry

       [cache]
       dir = "/scratch/bench-cache"

4. the default: ``$XDG_DATA_HOME/bench`` (``~/.local/share/bench``) for data and
   ``$XDG_CACHE_HOME/bench`` (``~/.cache/bench``) for caches.

Only the standard library is imported here, so the CLI stays fast.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from bench.errors import UserError

DATA_ROOT_ENV = "BENCH_DATA_ROOT"
CACHE_DIR_ENV = "BENCH_CACHE_DIR"
CONFIG_ENV = "BENCH_CONFIG"


class ConfigError(UserError, ValueError):
    """The config file exists but cannot be parsed; the message names it."""


def config_path() -> Path:
    """The config file bench reads (it need not exist)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "bench" / "config.toml"


def load_config() -> dict[str, Any]:
    """Parse the config file; an absent file is an empty config."""
    path = config_path()
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _expand(value: str | os.PathLike) -> Path:
    return Path(os.path.expandvars(str(value))).expanduser()


def data_root(explicit: str | os.PathLike | None = None, dataset: str | None = None) -> Path:
    """The directory a dataset looks under, by the precedence in the module docstring.

    ``dataset`` selects a per-dataset entry of ``[data.roots]`` in the config file; the
    environment variable still wins over it, since it is the more deliberate, per-shell choice.
    """
    if explicit:
        return _expand(explicit)
    if os.environ.get(DATA_ROOT_ENV):
        return _expand(os.environ[DATA_ROOT_ENV])
    cfg = load_config().get("data", {})
    if dataset and isinstance(cfg.get("roots"), dict) and cfg["roots"].get(dataset):
        return _expand(cfg["roots"][dataset])
    if cfg.get("root"):
        return _expand(cfg["root"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return _expand(base) / "bench"


def data_root_source(explicit: str | os.PathLike | None = None, dataset: str | None = None) -> str:
    """Where :func:`data_root` got its answer (for messages and the run manifest)."""
    if explicit:
        return "--root"
    if os.environ.get(DATA_ROOT_ENV):
        return DATA_ROOT_ENV
    cfg = load_config().get("data", {})
    if dataset and isinstance(cfg.get("roots"), dict) and cfg["roots"].get(dataset):
        return f"{config_path()} [data.roots] {dataset}"
    if cfg.get("root"):
        return f"{config_path()} [data] root"
    return "default"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache directory (demo audio, downloads in progress, reconstructions)."""
    if explicit:
        return _expand(explicit)
    if os.environ.get(CACHE_DIR_ENV):
        return _expand(os.environ[CACHE_DIR_ENV])
    cfg = load_config().get("cache", {})
    if cfg.get("dir"):
        return _expand(cfg["dir"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return _expand(base) / "bench"
