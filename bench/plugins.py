"""Plugins: codecs, metrics and datasets that live outside the package.

A plugin is a Python module that registers what it adds exactly as a built-in module does (with
``bench.api.register_codec``, ``register_metric`` or ``register_dataset``; see ``docs/plugins.md``).
There are three ways to name one, all loaded by :func:`load_plugins`:

* ``--plugin SPEC`` on any ``bench`` command (repeatable), where SPEC is an importable module name
  (``mylab.codecs``) or the path of a ``.py`` file;
* ``$BENCH_PLUGINS``: specs of the same two forms separated by ``os.pathsep`` (``:`` on POSIX);
* an installed distribution's entry point in the group ``bench.plugins``: loading it imports its
  module, and an entry point that names a callable (``mylab.codecs:register``) is then called
  with no arguments.

Each plugin is loaded once per process. A plugin that fails to load raises :class:`PluginError`
(a :class:`~bench.errors.UserError`: one line naming the plugin and the cause, exit code 2), and
whatever it registered before failing is taken back out of the registries.

Worker processes are started with ``spawn``, so they import nothing of their parent's: the specs
given to :func:`load_plugins` are therefore also recorded in ``$BENCH_PLUGINS`` (children inherit
it), and the registries load ``$BENCH_PLUGINS`` and the entry points right after the built-in
modules (``bench.registry.Registry.discover``), so a plugin metric is found in a worker too.

This is a core module: it imports the standard library and ``bench.errors`` only.
``bench.registry`` imports it (to load plugins and to know which plugin registers a name), never
the reverse.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Iterator

from bench.errors import UserError

#: environment variable listing plugin specs (also how spawned workers learn their parent's plugins)
ENV_VAR = "BENCH_PLUGINS"
#: entry-point group that installed distributions declare their plugins in
ENTRY_POINT_GROUP = "bench.plugins"


class PluginError(UserError):
    """A plugin that cannot be loaded: a missing file or module, or an error while importing it."""


@dataclass
class _Loading:
    """One plugin being imported: its label, and how to undo what it registered if it fails."""

    label: str | None  # None: built-in code imported while a plugin loads (it owns nothing)
    undo: list[Callable[[], None]] = field(default_factory=list)


#: key (``file:PATH``, ``module:NAME`` or ``entry-point:NAME=VALUE``) -> label of each loaded plugin
_loaded: dict[str, str] = {}
_stack: list[_Loading] = []
_entry_points_loaded = False


def current_plugin() -> str | None:
    """The plugin whose import is running now (it is registering names), or None for bench's own code."""
    return _stack[-1].label if _stack else None


def loading() -> bool:
    """Whether a plugin is being imported now (the registries then defer loading further plugins)."""
    return bool(_stack)


def on_failure(undo: Callable[[], None]) -> None:
    """Register how to undo one registration of the plugin being loaded, should its import fail."""
    if _stack and _stack[-1].label is not None:
        _stack[-1].undo.append(undo)


@contextmanager
def outside_plugin() -> Iterator[None]:
    """Run bench's own imports (built-in modules) while a plugin loads, without crediting them to it."""
    _stack.append(_Loading(None))
    try:
        yield
    finally:
        _stack.pop()


def loaded_plugins() -> list[str]:
    """Labels of the plugins loaded in this process, in load order."""
    return list(_loaded.values())


def env_specs() -> list[str]:
    """The plugin specs listed in ``$BENCH_PLUGINS`` (empty entries ignored)."""
    raw = os.environ.get(ENV_VAR, "")
    return [s.strip() for s in raw.split(os.pathsep) if s.strip()]


def load_plugins(specs: Iterable[str] = ()) -> list[str]:
    """Load the plugins ``specs`` names, then those of ``$BENCH_PLUGINS``, then the installed entry points.

    Each plugin is loaded once per process; returns the labels of those loaded by this call. The
    ``specs`` that loaded are appended to ``$BENCH_PLUGINS`` so that spawned workers load them too.
    Raises :class:`PluginError` for the first plugin that cannot be loaded.
    """
    given = [s.strip() for s in specs if s.strip()]
    new = [spec for spec in [*given, *env_specs()] if _load_spec(spec)]
    new += _load_entry_points()
    _record(given)
    return new


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or bool(os.altsep and os.altsep in spec)


def _key(spec: str) -> str:
    if _is_path(spec):
        return f"file:{Path(spec).expanduser().resolve()}"
    return f"module:{spec}"


def _record(given: list[str]) -> None:
    """Append the given specs (files as absolute paths) to ``$BENCH_PLUGINS``, once each."""
    current = env_specs()
    for spec in given:
        key = _key(spec)
        entry = key.removeprefix("file:") if key.startswith("file:") else spec
        if entry not in current:
            current.append(entry)
    if current:
        os.environ[ENV_VAR] = os.pathsep.join(current)


def _load_spec(spec: str) -> bool:
    """Import one plugin named by a module name or a file path; False when it was loaded before."""
    key = _key(spec)
    if key in _loaded:
        return False
    if key.startswith("file:"):
        path = Path(key.removeprefix("file:"))
        if not path.is_file():
            why = "is a folder, not a .py file" if path.is_dir() else "no such file"
            raise PluginError(f"plugin {spec!r}: {why} ({path})")
        with _loading(spec):
            _import_file(path)
    else:
        with _loading(spec):
            importlib.import_module(spec)
    _loaded[key] = spec
    return True


def _load_entry_points() -> list[str]:
    """Load every entry point of the group ``bench.plugins`` (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    from importlib import metadata

    new = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{ep.name}={ep.value}"
        if key in _loaded:
            continue
        label = f"{ep.name} ({ep.value})"
        with _loading(label):
            obj = ep.load()
            if callable(obj) and not isinstance(obj, (ModuleType, type)):
                obj()
        _loaded[key] = label
        new.append(label)
    _entry_points_loaded = True
    return new


@contextmanager
def _loading(label: str) -> Iterator[None]:
    """Import a plugin: credit its registrations to it; on failure undo them and raise a one-line error."""
    state = _Loading(label)
    _stack.append(state)
    try:
        yield
    except Exception as exc:
        for undo in reversed(state.undo):
            undo()
        if isinstance(exc, PluginError):
            raise
        cause = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        raise PluginError(f"plugin {label!r} failed to load: {cause}") from exc
    finally:
        _stack.pop()


def _module_name(path: Path) -> str:
    """A stable module name for a plugin file (its stem), made unique if another file took it."""
    stem = re.sub(r"\W", "_", path.stem)
    name = f"bench_plugin_{stem}"
    taken = sys.modules.get(name)
    if taken is not None and Path(getattr(taken, "__file__", "") or "").resolve() != path:
        name += "_" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return name


def _import_file(path: Path) -> ModuleType:
    """Import a ``.py`` file as a module (kept in ``sys.modules`` so its code can be fingerprinted)."""
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {str(path)!r}: not a .py file, so it cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
