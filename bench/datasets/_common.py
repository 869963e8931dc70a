"""Helpers shared by the dataset modules: options, roots, file discovery, the missing-data message."""

from __future__ import annotations

import copy
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from bench.datasets.base import DataMissingError, Dataset
from bench.errors import UserError
from bench.fswalk import list_audio_files
from bench.types import DOMAINS as DOMAINS  # re-exported for the dataset modules

if TYPE_CHECKING:
    from bench.datasets.protocol import ExcerptPolicy

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".aif", ".aiff")


class DatasetOptionError(UserError, ValueError):
    """A ``--dataset-opt`` the dataset does not know or cannot parse."""


def parse_bool(name: str, value: Any) -> bool:
    """An option value as a bool (true/false, yes/no, on/off, 1/0); anything else is a DatasetOptionError."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise DatasetOptionError(f"option {name}={value!r}: expected true/false")


def parse_optional_float(name: str, value: Any) -> float | None:
    """An option value in seconds (> 0), or None for "", none, whole or off (whole files)."""
    if value is None or str(value).strip().lower() in ("", "none", "whole", "off"):
        return None
    try:
        out = float(value)
    except ValueError as exc:
        raise DatasetOptionError(f"option {name}={value!r}: expected seconds or 'none'") from exc
    if out <= 0:
        raise DatasetOptionError(f"option {name}={value!r}: must be > 0")
    return out


class Configurable(Dataset):
    """A dataset with options (``bench run --dataset-opt key=value`` -> ``configure(key=value)``).

    ``option_defaults`` lists every option with its default; ``configure`` returns a configured
    copy (the registered instance is never changed) and rejects unknown names with a hint.
    """

    option_defaults: dict[str, Any] = {}
    option_help: dict[str, str] = {}

    def __init__(self) -> None:
        self.options: dict[str, Any] = dict(self.option_defaults)

    def configure(self, **options: Any) -> "Configurable":
        from bench.registry import did_you_mean

        unknown = [k for k in options if k not in self.option_defaults]
        if unknown:
            known = list(self.option_defaults) or ["(none)"]
            raise DatasetOptionError(f"dataset {self.name!r} has no option {unknown[0]!r}.{did_you_mean(unknown[0], known)}")
        new = copy.copy(self)
        new.options = {**self.options, **options}
        new.validate_options()
        return new

    def validate_options(self) -> None:
        """Parse/check ``self.options`` in place; raise DatasetOptionError on bad values."""


class ExcerptOption(Configurable):
    """A configurable dataset whose ``excerpt_s`` option picks loudness-gated excerpts instead of whole files."""

    @property
    def excerpt_policy(self) -> "ExcerptPolicy":
        """Loudness-gated excerpts of ``excerpt_s`` seconds, or whole files when the option is unset."""
        from bench.datasets.protocol import WHOLE, ExcerptPolicy

        excerpt_s = self.options.get("excerpt_s")
        return ExcerptPolicy(duration_s=float(excerpt_s)) if excerpt_s else WHOLE


def missing_data(name: str, split: str | None, root: Path | None, what: str, explicit_root: Any = None,
                 options: dict[str, Any] | None = None) -> DataMissingError:
    """The one clear error for absent data, naming the command that fetches it."""
    cmd = ["bench", "data", "download", name]
    for key, value in (options or {}).items():
        cmd += ["--dataset-opt", f"{key}={value}"]
    if split:
        cmd += ["--split", split]
    if explicit_root:
        cmd += ["--root", str(explicit_root)]
    where = f" under {root}" if root is not None else ""
    return DataMissingError(
        f"{name}{'/' + split if split else ''} not found{where} ({what}). "
        f"Fetch it with: {shlex.join(cmd)}   "
        f"(or point --root, $BENCH_DATA_ROOT or ~/.config/bench/config.toml at an existing copy)"
    )


def audio_files(directory: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Audio files under ``directory``, recursively, hidden ones skipped, sorted by relative path.

    Each real file once, no symlink loops: the rules of :func:`bench.fswalk.list_audio_files`.
    """
    return list_audio_files(directory, extensions)


def read_text(path: Path) -> str:
    """A transcript file, stripped, whitespace runs collapsed."""
    return " ".join(path.read_text(encoding="utf-8", errors="replace").split())


class Downloadable(Dataset):
    """A dataset with a public source: ``resources`` per split, ``download`` and ``verify``.

    Subclasses define ``resources(split)`` (receipt name -> :class:`~bench.datasets.download.Resource`)
    and may override the property ``expected_counts`` (split -> number of items in the official release).
    """

    source_note: str = ""

    @property
    def expected_counts(self) -> dict[str, int]:
        """Items per split in the official release, checked by :meth:`verify`; empty = not checked."""
        return {}

    def resources(self, split: str) -> list[tuple[str, Any]]:
        """(receipt name, Resource) pairs that ``split`` needs; none by default (no public download)."""
        return []

    def download(self, split: str | None = None, root: str | os.PathLike | None = None, *, progress: bool = True,
                 keep_archive: bool = False, mirror: str | None = None, force: bool = False) -> list[str]:
        """Fetch what ``split`` needs under the data root; returns one line per resource."""
        from bench.config import data_root
        from bench.datasets.download import fetch

        split = self.check_split(split)
        base = data_root(root, self.name)
        lines = []
        resources = self.resources(split)
        if not resources:
            raise DataMissingError(f"{self.name} has no public download for {split!r}. {self.source_note}")
        for receipt_name, res in resources:
            if mirror:
                res = res.with_base_url(mirror)
            receipt = fetch(res, base, receipt_name, progress=progress, keep_archive=keep_archive, force=force)
            if receipt is None:
                lines.append(f"{receipt_name}: already present at {base / res.provides}")
            else:
                checked = ", ".join(receipt.checksum_checked) or "no published checksum; archive integrity only"
                lines.append(f"{receipt_name}: {receipt.size_bytes / 1e6:.1f} MB from {receipt.url}, verified "
                             f"({checked}), unpacked to {receipt.unpacked_to}")
        return lines

    def verify(self, split: str | None = None, root: str | Path | None = None,
               progress: bool = False) -> tuple[bool, list[str]]:
        """Check that every item of a split is present and readable; (ok, report lines)."""
        from bench.config import data_root
        from bench.datasets.download import read_receipt

        split = self.check_split(split)
        items = list(self.items(split, root))
        problems = []
        for item in items:
            why = check_audio_file(item.path, int(item.extra.get("stream_index", 0)))
            if why:
                problems.append(f"{item.id}: {why}")
        lines = [f"{self.name}/{split}: {len(items)} items, {len(problems)} unreadable"]
        ok = not problems
        expected = self.expected_counts.get(split)
        if expected is not None and len(items) != expected:
            lines.append(f"expected {expected} items in the official release, found {len(items)}")
            ok = False
        base = data_root(root, self.name)
        for receipt_name, _res in self.resources(split):
            rec = read_receipt(base, receipt_name)
            if rec:
                digests = ", ".join(f"{k} {v}" for k, v in rec["digests"].items())
                lines.append(f"{receipt_name}: downloaded {rec['finished_utc']} from {rec['url']} ({digests})")
        lines += problems[:20]
        if len(problems) > 20:
            lines.append(f"... and {len(problems) - 20} more")
        return ok, lines


def check_audio_file(path: str, stream_index: int = 0) -> str | None:
    """Why a file cannot be used (None when fine): missing, empty, unreadable header, no stream."""
    p = Path(path)
    if not p.is_file():
        return f"missing file {path}"
    if p.stat().st_size == 0:
        return f"empty file {path}"
    if path.lower().endswith((".mp4", ".m4a", ".aac")):
        try:
            import av

            with av.open(path) as container:
                if len(container.streams.audio) <= stream_index:
                    return f"{path}: no audio stream #{stream_index}"
        except Exception as exc:  # noqa: BLE001
            return f"{path}: unreadable ({exc})"
        return None
    try:
        import soundfile as sf

        info = sf.info(path)
        if info.frames == 0:
            return f"{path}: no samples"
    except Exception as exc:  # noqa: BLE001
        return f"{path}: unreadable header ({exc})"
    return None
