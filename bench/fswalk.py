"""The one directory walker: audio files under a folder, each real file once, in a stable order.

Rules (shared by the datasets and the training data scan):

* **Order.** Sorted by relative path, component by component (``a/x`` before ``a-b/x``), so
  the same tree gives the same list on every machine.
* **Hidden.** Names starting with ``.`` (files and folders) are skipped unless asked otherwise:
  ``.git``, caches, and macOS ``._clip.wav`` resource forks are not audio.
* **Directory symlinks.** A link whose target lies inside the tree being walked is not
  followed (the real folder is listed anyway), nor one whose target contains the folder the
  walk is in (a loop), nor a folder already walked (two links to one folder). A link to a
  folder outside the tree is followed, once.
* **Each file once.** Files are told apart by ``(st_dev, st_ino)`` (by real path where a
  filesystem reports inode 0): a file reached twice (a file symlink next to its target, two
  links to one file, hard links) is listed once, under its own non-symlink name when it has
  one, else under the first name in order.
* **Errors.** Unreadable sub-folders and broken symlinks are skipped, as ``os.walk`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


@dataclass
class _Walk:
    """State of one walk: where it started, what it has seen, what it found."""

    root_real: str
    extensions: tuple[str, ...]
    skip_hidden: bool
    seen_dirs: set[tuple] = field(default_factory=set)
    found: list[tuple[tuple[str, ...], bool, tuple]] = field(default_factory=list)  # (relative parts, is a link, id)


def _inside(path: str, folder: str) -> bool:
    """Whether real path ``path`` is ``folder`` or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _dir_to_follow(entry: os.DirEntry, here_real: str, walk: _Walk) -> str | None:
    """The real path to descend into for a directory entry, or None when it must be skipped."""
    if not entry.is_symlink():
        return os.path.join(here_real, entry.name)
    target = os.path.realpath(entry.path)
    if _inside(target, walk.root_real) or _inside(here_real, target):
        return None  # back into the tree, or a loop through an ancestor
    return target


def _identity(st: os.stat_result, path: str) -> tuple:
    """What tells files apart: ``(st_dev, st_ino)``, or the real path where the inode is 0 (unknown)."""
    return (st.st_dev, st.st_ino) if st.st_ino else ("path", os.path.realpath(path))


def _dir_key(path: str) -> tuple | None:
    """The identity of a directory (following links), or None when it cannot be read."""
    try:
        return _identity(os.stat(path), path)
    except OSError:
        return None


def _visit(directory: str, rel: tuple[str, ...], here_real: str, walk: _Walk) -> None:
    """Record the matching files of ``directory`` and descend into its sub-folders."""
    key = _dir_key(directory)
    if key is None or key in walk.seen_dirs:
        return
    walk.seen_dirs.add(key)
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if walk.skip_hidden and entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError:
            continue
        if is_dir:
            real = _dir_to_follow(entry, here_real, walk)
            if real is not None:
                _visit(entry.path, rel + (entry.name,), real, walk)
        elif is_file and entry.name.lower().endswith(walk.extensions):
            try:
                st = entry.stat()
            except OSError:
                continue
            walk.found.append((rel + (entry.name,), entry.is_symlink(), _identity(st, entry.path)))


def _each_file_once(found: list[tuple[tuple[str, ...], bool, tuple]]) -> list[tuple[str, ...]]:
    """One relative path per real file: a non-symlink name first, then the first in order."""
    best: dict[tuple, tuple[bool, tuple[str, ...]]] = {}
    for rel, is_link, key in found:
        candidate = (is_link, rel)
        if key not in best or candidate < best[key]:
            best[key] = candidate
    return sorted(rel for _, rel in best.values())


def list_audio_files(root: str | os.PathLike, extensions: Iterable[str], *, skip_hidden: bool = True) -> list[Path]:
    """Files under ``root`` whose names end with one of ``extensions`` (any case), by the rules above.

    The paths are ``root / relative path`` (not resolved), so ``path.relative_to(root)`` works.
    A ``root`` that is not a readable directory gives an empty list.
    """
    root = Path(root)
    walk = _Walk(root_real=os.path.realpath(root), extensions=tuple(e.lower() for e in extensions),
                 skip_hidden=skip_hidden)
    _visit(str(root), (), walk.root_real, walk)
    return [root.joinpath(*rel) for rel in _each_file_once(walk.found)]

