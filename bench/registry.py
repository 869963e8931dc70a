"""Name -> object registries for codecs, metrics and datasets.

Adding a codec, metric or dataset is one new module that calls ``register`` at import time.
``discover`` imports every module of a subpackage, so nothing else has to change.
Heavy backends are imported inside functions or ``load()``, so discovery stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Generic, Iterator, TypeVar

from bench.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, KeyError):
    """A name that no registry entry matches; the message carries a "did you mean" hint."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(sorted(choices))}."


class Registry(Generic[T]):
    """A named collection with helpful errors for misspelt names."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, obj: T) -> T:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def discover(self) -> None:
        """Import every module of the subpackage so that each registers itself."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name.startswith("_") or mod.name in {"base", "nn", "checkpoints"}:
                continue
            importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._entries:
            raise UnknownNameError(f"Unknown {self.kind} {name!r}.{did_you_mean(name, list(self._entries))}")
        return self._entries[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self.discover()
        for name in sorted(self._entries):
            yield name, self._entries[name]

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries


CODECS: Registry = Registry("codec", "bench.codecs")
METRICS: Registry = Registry("metric", "bench.metrics")
DATASETS: Registry = Registry("dataset", "bench.datasets")
