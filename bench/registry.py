"""Name -> object registries for codecs, metrics and datasets.

Adding a codec, metric or dataset is one new module that calls ``register`` at import time.
``discover`` imports every module of a subpackage, so nothing else has to change; then it loads
the plugins named in ``$BENCH_PLUGINS`` and the installed ``bench.plugins`` entry points (see
``bench.plugins``), so that a spawned worker process finds a plugin's names as its parent does.
A plugin registers the same way; its names are checked against every built-in one (the built-in
modules are imported first), and a name that is taken raises :class:`DuplicateNameError`.
Heavy backends are imported inside functions or ``load()``, so discovery stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from types import FrameType
from typing import Generic, Iterator, TypeVar

from bench import plugins
from bench.errors import UserError

T = TypeVar("T")

#: modules of a registry's subpackage that register nothing (shared code, networks, data files)
_NOT_ENTRIES = {"base", "nn", "checkpoints"}


class UnknownNameError(UserError, KeyError):
    """A name that no registry entry matches; the message carries a "did you mean" hint."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0])


class DuplicateNameError(UserError, ValueError):
    """A second, different object registered under a name that is taken (a plugin clashing with bench)."""


def did_you_mean(name: str, choices: list[str]) -> str:
    """The hint appended to an unknown-name message: close matches, then every known name."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(sorted(choices))}."


class Registry(Generic[T]):
    """A named collection with helpful errors for misspelt names."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}  # name -> the plugin that registered it
        self._builtins_imported = False
        self._discovered = False

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name`` (again with the same object is a no-op); a taken name is an error."""
        plugin = None if self._registered_by_builtin() else plugins.current_plugin()
        if plugin is not None:
            self._import_builtins()  # so that a plugin's name is checked against every built-in one
        if name in self._entries and self._entries[name] is not obj:
            owner = self._owners.get(name)
            by = f"plugin {owner!r}" if owner else "bench"
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered by {by}; choose another name")
        self._entries[name] = obj
        if plugin is not None:
            self._owners[name] = plugin
            plugins.on_failure(lambda: self._forget(name, obj))
        return obj

    def _registered_by_builtin(self) -> bool:
        """Whether the module whose top-level code is registering is one of this registry's subpackage.

        A plugin may import a built-in module (to subclass its codec) before bench has imported
        it; that module's registrations are bench's own, not the plugin's.
        """
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "<module>":
            frame = frame.f_back
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        return str(module).startswith(f"{self.package}.")

    def _forget(self, name: str, obj: T) -> None:
        """Undo one registration (of a plugin whose import then failed)."""
        if self._entries.get(name) is obj:
            del self._entries[name]
            self._owners.pop(name, None)

    def origin(self, name: str) -> str | None:
        """The plugin that registered ``name``, or None for bench's own entries."""
        return self._owners.get(name)

    def discover(self) -> None:
        """Import every module of the subpackage so that each registers itself, then load the plugins.

        Plugins come from ``$BENCH_PLUGINS`` and the installed entry points (``bench.plugins``);
        while a plugin is being imported, loading further ones waits for the outer load to finish.
        """
        self._import_builtins()
        if not self._discovered and not plugins.loading():
            plugins.load_plugins()
            self._discovered = True

    def _import_builtins(self) -> None:
        """Import the subpackage's modules once (each registers its entries as bench's own)."""
        if self._builtins_imported:
            return
        self._builtins_imported = True
        with plugins.outside_plugin():
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(pkg.__path__):
                if mod.name.startswith("_") or mod.name in _NOT_ENTRIES:
                    continue
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises with a "did you mean" hint."""
        self.discover()
        if name not in self._entries:
            raise UnknownNameError(f"Unknown {self.kind} {name!r}.{did_you_mean(name, list(self._entries))}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, sorted (built-ins and plugins)."""
        self.discover()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs sorted by name, after discovery."""
        self.discover()
        for name in sorted(self._entries):
            yield name, self._entries[name]

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries


CODECS: Registry = Registry("codec", "bench.codecs")
METRICS: Registry = Registry("metric", "bench.metrics")
DATASETS: Registry = Registry("dataset", "bench.datasets")
