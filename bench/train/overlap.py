"""Training files versus evaluation files: which ones are the same recording.

A file counts as shared when

* **content**: its bytes are identical (SHA-256 of the file; only files of equal size are hashed,
  since identical bytes mean identical sizes), or
* **relative path**: the training file's path below its ``--data`` folder and the evaluation file's
  path below the deepest folder holding all evaluation files, both without the extension, end
  alike: one is the tail of the other (``test-clean/61/70968/61_70968_000000.flac`` matches
  ``speech/test-clean/61/70968/61_70968_000000.wav``). That also catches a re-encoded or resampled
  copy that kept its name. Generic names (``clip0``) can match by chance: the card lists every
  match for a person to judge.

Two uses: before training, files of identical content are put in one hold-out unit
(:func:`share_units_of_copies`), so a copy can never sit on both sides of the hold-out split,
and the split is then checked (:func:`holdout_overlap`); and ``--check-overlap DATASET[:SPLIT]``
compares the training files with a benchmark dataset's items (:func:`dataset_overlap`). Both
results go into the checkpoint card under ``training.data``.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from bench.train.config import OverlapCheck
from bench.train.data import AudioFile

#: at most this many matches are listed in a card (the count is always complete)
MAX_LISTED = 200
METHOD = "sha256 of the file content; relative path without extension (one path the tail of the other)"


@dataclass(frozen=True)
class Entry:
    """One file to compare: its path, and its path below its root without the extension (POSIX)."""

    path: str
    rel: str


class ContentHashes:
    """SHA-256 of files (whole, and of their first 64 KiB), each computed once per path."""

    HEAD_BYTES = 1 << 16

    def __init__(self) -> None:
        self._full: dict[str, str] = {}
        self._head: dict[str, str] = {}

    @staticmethod
    def _digest(path: str, limit: int | None) -> str:
        """SHA-256 of the file's first ``limit`` bytes (all of it when None)."""
        h = hashlib.sha256()
        left = limit
        with open(path, "rb") as f:
            while left is None or left > 0:
                chunk = f.read(1 << 20 if left is None else min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                left = None if left is None else left - len(chunk)
        return h.hexdigest()

    def head(self, path: str) -> str:
        """SHA-256 of the first 64 KiB: a cheap test that tells most same-size files apart."""
        if path not in self._head:
            self._head[path] = self._digest(path, self.HEAD_BYTES)
        return self._head[path]

    def of(self, path: str) -> str:
        """The hex SHA-256 of the whole file at ``path``."""
        if path not in self._full:
            self._full[path] = self._digest(path, None)
        return self._full[path]


def _size(path: str) -> int:
    """File size in bytes (-1 when it cannot be read: such a file matches nothing by content)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def identical_groups(paths: Iterable[str], hashes: ContentHashes) -> list[list[str]]:
    """The sets (of two or more) of ``paths`` whose files have identical bytes.

    Narrowed step by step, so only real candidates are read whole: equal size, then equal
    SHA-256 of the first 64 KiB, then equal SHA-256 of the whole file.
    """
    groups = [sorted({p for p in paths if _size(p) >= 0})]
    for key in (_size, hashes.head, hashes.of):
        narrowed: list[list[str]] = []
        for group in groups:
            by_key: dict[object, list[str]] = defaultdict(list)
            for p in group:
                by_key[key(p)].append(p)
            narrowed += [same for same in by_key.values() if len(same) > 1]
        groups = narrowed
    return groups


def _content_pairs(train: Sequence[Entry], evaluation: Sequence[Entry], hashes: ContentHashes
                   ) -> set[tuple[str, str]]:
    """(training path, evaluation path) pairs with identical bytes (the same real file included)."""
    real = {p: os.path.realpath(p) for p in {e.path for e in [*train, *evaluation]}}
    group_of: dict[str, int] = {}
    for i, group in enumerate(identical_groups(set(real.values()), hashes)):
        group_of.update((p, i) for p in group)

    def key(path: str) -> tuple[str, object]:
        r = real[path]
        return ("copies", group_of[r]) if r in group_of else ("file", r)

    eval_by_key: dict[tuple[str, object], list[str]] = defaultdict(list)
    for e in evaluation:
        eval_by_key[key(e.path)].append(e.path)
    return {(t.path, e) for t in train for e in eval_by_key.get(key(t.path), [])}


def _path_pairs(train: Sequence[Entry], evaluation: Sequence[Entry]) -> set[tuple[str, str]]:
    """(training path, evaluation path) pairs whose relative paths end alike: one is the other's tail."""
    eval_by_rel: dict[tuple[str, ...], list[str]] = defaultdict(list)  # whole relative paths
    eval_by_tail: dict[tuple[str, ...], list[str]] = defaultdict(list)  # every tail of them
    for e in evaluation:
        parts = PurePosixPath(e.rel).parts
        eval_by_rel[parts].append(e.path)
        for n in range(1, len(parts) + 1):
            eval_by_tail[parts[len(parts) - n:]].append(e.path)
    lengths = sorted({len(parts) for parts in eval_by_rel})
    pairs: set[tuple[str, str]] = set()
    for t in train:
        parts = PurePosixPath(t.rel).parts
        pairs.update((t.path, e) for e in eval_by_tail.get(parts, []))  # the training path is an evaluation tail
        for n in lengths:  # an evaluation path is a training tail
            if n < len(parts):
                pairs.update((t.path, e) for e in eval_by_rel.get(parts[len(parts) - n:], []))
    return pairs


def find_overlap(train: Sequence[Entry], evaluation: Sequence[Entry], hashes: ContentHashes | None = None
                 ) -> list[dict[str, Any]]:
    """Every (training file, evaluation file) pair that shares content or relative path, sorted.

    Each entry names both paths, both relative paths, and ``by``: ``["sha256"]``, ``["path"]`` or both.
    """
    hashes = hashes or ContentHashes()
    by_content = _content_pairs(train, evaluation, hashes)
    by_path = _path_pairs(train, evaluation)
    train_rel = {t.path: t.rel for t in train}
    eval_rel = {e.path: e.rel for e in evaluation}
    out = []
    for t, e in sorted(by_content | by_path):
        by = [name for name, found in (("sha256", by_content), ("path", by_path)) if (t, e) in found]
        out.append({"train": t, "train_rel": train_rel[t], "evaluation": e, "evaluation_rel": eval_rel[e], "by": by})
    return out


def report(against: str, train: Sequence[Entry], evaluation: Sequence[Entry], matches: list[dict[str, Any]]
           ) -> dict[str, Any]:
    """The card's record of one check: what was compared, how, and the matches (at most :data:`MAX_LISTED`)."""
    return {"against": against, "method": METHOD, "training_files": len(train), "evaluation_files": len(evaluation),
            "overlapping_count": len(matches), "overlapping": matches[:MAX_LISTED]}


def _without_suffix(rel: PurePosixPath) -> str:
    return rel.with_suffix("").as_posix()


def training_entries(files: Iterable[AudioFile]) -> list[Entry]:
    """Training files as entries (relative to their ``--data`` folder; a bare name when unknown)."""
    return [Entry(f.path, _without_suffix(PurePosixPath(f.rel_path or Path(f.path).name))) for f in files]


def item_entries(paths: Iterable[str]) -> list[Entry]:
    """Evaluation files as entries, relative to the deepest folder holding them all (each file once)."""
    unique = sorted(set(paths))
    if not unique:
        return []
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in unique])
    return [Entry(p, _without_suffix(PurePosixPath(Path(os.path.relpath(os.path.abspath(p), root)).as_posix())))
            for p in unique]


def share_units_of_copies(files: list[AudioFile], hashes: ContentHashes) -> list[AudioFile]:
    """``files`` with every set of identical-content files in one hold-out unit (the smallest of their units).

    A copy of a file (another name, another folder, another ``--data`` folder) then goes to the
    same side of the hold-out split as the original; the units it joins move with it.
    """
    units_of: dict[str, list[str]] = defaultdict(list)
    for f in files:
        units_of[f.path].append(f.unit)
    parent: dict[str, str] = {}

    def root(unit: str) -> str:
        while parent.get(unit, unit) != unit:
            unit = parent[unit]
        return unit

    for group in identical_groups(units_of, hashes):
        roots = sorted({root(u) for p in group for u in units_of[p]})
        for r in roots[1:]:
            parent[r] = roots[0]
    if not parent:
        return files
    return [f if root(f.unit) == f.unit else replace(f, unit=root(f.unit)) for f in files]


def holdout_overlap(train: list[AudioFile], held_out: list[AudioFile], hashes: ContentHashes) -> dict[str, Any]:
    """The check of the hold-out split against the training split; identical content there is a bug."""
    train_entries, held_entries = training_entries(train), training_entries(held_out)
    matches = find_overlap(train_entries, held_entries, hashes)
    shared = [m for m in matches if "sha256" in m["by"]]
    if shared:
        raise RuntimeError(f"hold-out split leaks: {shared[0]['train']} and {shared[0]['evaluation']} have the same "
                           "content on both sides")
    return report("holdout", train_entries, held_entries, matches)


def dataset_overlap(train: list[AudioFile], check: OverlapCheck, hashes: ContentHashes) -> dict[str, Any]:
    """Compare the training files with the items of the evaluation set ``check`` names."""
    from bench.datasets.base import resolve_dataset, select_items

    ds, split = resolve_dataset(check.dataset, check.split, dict(check.options) or None)
    items = select_items(ds, split, check.root)
    train_entries, eval_entries = training_entries(train), item_entries(it.path for it in items)
    result = report(f"{ds.name}:{split}", train_entries, eval_entries, find_overlap(train_entries, eval_entries, hashes))
    result["items"] = len(items)
    return result
