"""Helpers shared by the dataset modules: options, roots, file discovery, the missing-data message."""

from __future__ import annotations

import copy
import os
import shlex
from pathlib import Path
from typing import Any, Iterable

from bench.datasets.base import DataMissingError, Dataset

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".aif", ".aiff")
DOMAINS = ("speech", "music", "general")


class DatasetOptionError(ValueError):
    """A ``--dataset-opt`` the dataset does not know or cannot parse."""


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise DatasetOptionError(f"option {name}={value!r}: expected true/false")


def parse_optional_float(name: str, value: Any) -> float | None:
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


def missing_data(name: str, split: str | None, root: Path | None, what: str, explicit_root: Any = None) -> DataMissingError:
    """The one clear error for absent data, naming the command that fetches it."""
    cmd = ["bench", "data", "download", name]
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
    """Audio files under ``directory``, recursively, hidden ones skipped, sorted by relative path."""
    exts = tuple(e.lower() for e in extensions)
    out = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(exts):
                out.append(Path(dirpath) / f)
    return sorted(out, key=lambda p: p.relative_to(directory).as_posix())


def read_text(path: Path) -> str:
    """A transcript file, stripped, whitespace runs collapsed."""
    return " ".join(path.read_text(encoding="utf-8", errors="replace").split())
