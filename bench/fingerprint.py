"""Fingerprints: short hashes of everything that decides a computed value.

The reconstruction cache and the resume logic key their entries by these, so a value computed
under other code, other parameters or other library versions is never served again:

* :func:`source_fingerprint` hashes the *code* of modules: the abstract syntax tree with
  docstrings removed, so editing a comment or a docstring keeps caches valid, while any change
  to what the code does (a constant, a line, a default) changes the hash.
* :func:`digest` hashes any JSON-able description (parameters, versions) canonically.
* :func:`package_versions` reads installed distributions' versions (``None`` when absent).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import sys
from functools import lru_cache
from typing import Any, Iterable


def digest(obj: Any, length: int = 16) -> str:
    """Canonical sha256 of a JSON-able object (sorted keys), shortened to ``length`` hex digits."""
    raw = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:length]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring of every module, class and function (they do not change what code does)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=256)
def _file_fingerprint(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as f:
        source = f.read()
    try:
        tree = _strip_docstrings(ast.parse(source))
        text = ast.dump(tree, annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError):
        text = source.decode("utf-8", "replace")
    return hashlib.sha256(text.encode()).hexdigest()


def module_fingerprint(module_name: str) -> str:
    """Hash of one module's code (docstrings and comments ignored); 'unavailable' when it has no source."""
    import os

    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    try:
        path = inspect.getsourcefile(module)
    except TypeError:
        path = None
    if not path or not os.path.exists(path):
        return "unavailable"
    st = os.stat(path)
    return _file_fingerprint(path, st.st_mtime_ns, st.st_size)


def source_fingerprint(module_names: Iterable[str], *, with_imports: bool = True) -> str:
    """One hash over the code of several modules (order independent, duplicates ignored).

    ``with_imports`` adds the ``bench`` modules each of them imports, anywhere in its code (the
    house style imports inside functions), one level deep: a metric's text normaliser or a
    codec's network module counts as its code.
    """
    names = set(module_names)
    if with_imports:
        for name in list(names):
            names |= bench_imports(name)
    return digest({name: module_fingerprint(name) for name in sorted(names)}, length=32)


def bench_imports(module_name: str) -> set[str]:
    """The ``bench.*`` modules that ``module_name`` imports anywhere in its source (that exist)."""
    import importlib.util

    try:
        path = inspect.getsourcefile(sys.modules.get(module_name) or importlib.import_module(module_name))
        tree = ast.parse(open(path, "rb").read()) if path else None
    except (TypeError, OSError, SyntaxError, ImportError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("bench"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from bench.metrics import text_norm`
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bench")}
    out = set()
    for name in found:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            out.add(name)
    return out


def class_modules(cls: type) -> list[str]:
    """Modules that define ``cls`` and its base classes (their code decides what ``cls`` does)."""
    return sorted({c.__module__ for c in cls.__mro__ if c.__module__ not in ("builtins", "abc", "typing")})


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of distributions (None for a distribution that is not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
