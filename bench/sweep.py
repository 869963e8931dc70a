"""Sweep files: everything ``bench run`` is asked to do (codecs, datasets, metrics, settings) in one TOML file.

``bench run --config sweep.toml`` reads it; options given on the command line override it, and
its text and sha256 go into each run's manifest. The layout::

    codecs = "opus@6,opus@12,dac@*"     # the --codecs text, at the top (or in [run]), or the tables below

    [run]                                # any `bench run` option by its long name, dashes as underscores
    metrics = ["si_sdr", "mel_distance"] # a list, or the --metrics text "si_sdr,mel_distance"
    limit = 50
    loudness = -16.0                     # or "none"
    workers = 4

    [[codecs]]                           # one table per codec: the structured form of --codecs
    name = "dac"
    checkpoint = "runs/my/dac.safetensors"   # optional: NAME:CHECKPOINT
    points = ["1", "4", "8"]             # optional: operating points or globs ("*": all); default: its sweep

    [[datasets]]                         # one run per dataset and split, run one after the other
    name = "libritts"
    split = ["test-clean", "test-other"] # a split or a list of them (absent: the dataset's default)
    root = "~/data"                      # root, items and limit, when given, replace [run]'s here
    options = { domain = "speech" }      # the --dataset-opt KEY=VALUE pairs
    items = "ids.txt"
    limit = 20

Given in [run], ``dataset``, ``split`` and ``dataset_opt`` choose a single dataset instead, and
then a [[datasets]] array is a mistake.

This module checks the file's structure: its tables, their key names, each value's TOML type. The
value of every setting is then checked by the parser the command line uses for that option, which
the caller passes in (``settings``, e.g. ``bench.cli.run``'s), so a file and a command line refuse
the same values with the same reason and the ranges are defined once. Every mistake is one
:class:`SweepError` naming the file and the key (exit code 2 on the command line).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.errors import UserError
from bench.registry import did_you_mean

#: what each TOML type is called in a message
_KIND_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                                list: "a list of strings", dict: "a table of KEY = VALUE"}

#: the keys of a [[datasets]] table -> the option (setting) each stands for; "split" may also be a list
DATASET_KEYS = {"name": "dataset", "split": "split", "root": "root", "options": "dataset_opt", "items": "items",
                "limit": "limit"}
#: the settings that choose the dataset of a run: given in [run], they exclude [[datasets]]
DATASET_CHOICE = ("dataset", "split", "dataset_opt")
_CODEC_KEYS = ("name", "checkpoint", "points")
_TOP_KEYS = ("run", "codecs", "datasets")


class SweepError(UserError):
    """A mistake in a sweep file: one line naming the file and the key."""


@dataclass(frozen=True)
class Setting:
    """How the value of one setting is checked: the TOML types it may have and the option's own parser.

    ``kinds`` among ``str``, ``int``, ``float`` (an integer is a number too), ``bool``, ``list`` (of
    strings, joined with commas as the option's text) and ``dict`` (a table of scalars, the values
    as text). ``parse`` takes the value's text as the command line would see it and returns the
    checked value or raises ValueError with the reason; None takes the value as it is.
    """

    kinds: tuple[type, ...]
    parse: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file: its text and hash, the [run] settings and one entry per (dataset, split)."""

    path: str
    text: str
    sha256: str
    settings: dict[str, Any] = field(default_factory=dict)  # option name -> checked value ([run] and codecs)
    datasets: tuple[dict[str, Any], ...] = ()  # per run: the dataset settings of one [[datasets]] split

    def runs(self) -> list[dict[str, Any]]:
        """The file's settings of each run: [run] updated by one [[datasets]] entry (one run without any)."""
        if not self.datasets:
            return [dict(self.settings)]
        return [{**self.settings, **entry} for entry in self.datasets]

    def provenance(self) -> dict[str, str]:
        """What a run manifest records of the file: its path, sha256 and full text."""
        return {"path": self.path, "sha256": self.sha256, "text": self.text}


def _fail(path: str, where: str, message: str) -> SweepError:
    """The one-line error of a sweep file: ``FILE: WHERE: MESSAGE``."""
    return SweepError(f"{path}: {where}: {message}")


def _kind_of(value: Any, kinds: tuple[type, ...]) -> type | None:
    """Which of ``kinds`` a TOML value is (bool is not an integer here; an integer is a number), else None."""
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return bool
        if isinstance(value, bool):
            continue
        if kind is float and isinstance(value, (int, float)):
            return float
        if kind in (str, int, list, dict) and isinstance(value, kind):
            return kind
    return None


def _as_text(value: Any, kind: type) -> str:
    """A value's text as the command line would give it (a list of strings joined with commas)."""
    if kind is list:
        return ",".join(value)
    return str(value)


def _scalar_text(value: Any) -> str:
    """A dataset option's value as the text ``--dataset-opt KEY=VALUE`` would give (true/false in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_value(path: str, where: str, value: Any, setting: Setting) -> Any:
    """The checked value of one setting, or SweepError naming the file, the key and the reason."""
    kind = _kind_of(value, setting.kinds)
    if kind is None:
        expected = " or ".join(_KIND_NAMES[k] for k in setting.kinds)
        raise _fail(path, where, f"expected {expected}, got {type(value).__name__} {value!r}")
    if kind is bool:
        return value
    if kind is list and (not value or not all(isinstance(v, str) and v.strip() for v in value)):
        raise _fail(path, where, f"expected a list of non-empty strings, got {value!r}")
    if kind is dict:
        bad = [k for k, v in value.items() if not k.strip() or _kind_of(v, (str, float, bool)) is None]
        if bad:
            raise _fail(path, where, f"option {bad[0]!r}: expected KEY = a string, number or true/false")
        return {k.strip(): _scalar_text(v) for k, v in value.items()}
    if setting.parse is None:
        return _as_text(value, kind) if kind is list else value
    try:
        return setting.parse(_as_text(value, kind))
    except ValueError as exc:
        raise _fail(path, where, str(exc)) from None


def _unknown(path: str, where: str, key: str, known: list[str]) -> SweepError:
    """The error of a key that is not one of ``known``, with a did-you-mean hint."""
    return _fail(path, where, f"unknown key {key!r}.{did_you_mean(key, known)}")


def _check_table(path: str, where: str, value: Any) -> dict[str, Any]:
    """``value`` if it is a TOML table, else SweepError."""
    if not isinstance(value, dict):
        raise _fail(path, where, f"expected a table ([{where}]), got {type(value).__name__} {value!r}")
    return value


def _codec_token(path: str, where: str, table: Any) -> str:
    """One [[codecs]] table as --codecs text: ``NAME[:CHECKPOINT][@POINT,...]`` (one token per point)."""
    table = _check_table(path, where, table)
    for key in table:
        if key not in _CODEC_KEYS:
            raise _unknown(path, where, key, list(_CODEC_KEYS))
    name = table.get("name")
    if not isinstance(name, str) or not name.strip() or any(ch in name for ch in ",:@"):
        raise _fail(path, f"{where} name", f"expected a codec name (see 'bench ls codecs'), got {name!r}")
    checkpoint = table.get("checkpoint")
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip() or "," in checkpoint):
        raise _fail(path, f"{where} checkpoint", f"expected a checkpoint path without commas, got {checkpoint!r}")
    points = table.get("points")
    if isinstance(points, str):
        points = [points]
    if points is not None and (not isinstance(points, list) or not points
                               or not all(isinstance(p, str) and p.strip() and not set(p) & set(",@") for p in points)):
        raise _fail(path, f"{where} points", f"expected a non-empty list of operating points or globs, got {points!r}")
    if checkpoint is not None and points is None and "@" in checkpoint:
        raise _fail(path, f"{where} checkpoint", "a checkpoint path with '@' needs points (else '@' reads as a point)")
    head = name.strip() + (f":{checkpoint}" if checkpoint else "")
    return ",".join(f"{head}@{p.strip()}" for p in points) if points else head


def _codecs_text(path: str, value: Any, setting: Setting) -> str:
    """The top-level ``codecs``: --codecs text, a list of its tokens, or an array of [[codecs]] tables."""
    if isinstance(value, list) and value and all(isinstance(t, dict) for t in value):
        text = ",".join(_codec_token(path, f"[[codecs]] #{i + 1}", t) for i, t in enumerate(value))
        return check_value(path, "[[codecs]]", text, setting)
    return check_value(path, "codecs", value, setting)


def _check_run(path: str, table: Any, settings: Mapping[str, Setting]) -> dict[str, Any]:
    """The [run] table's settings, each checked by its option's parser."""
    out: dict[str, Any] = {}
    for key, value in _check_table(path, "run", table).items():
        if key not in settings:
            raise _unknown(path, "[run]", key, sorted(settings))
        out[key] = check_value(path, f"[run] {key}", value, settings[key])
    return out


def _dataset_runs(path: str, where: str, table: Any, settings: Mapping[str, Setting]) -> list[dict[str, Any]]:
    """One [[datasets]] table's runs: its settings, once per split when ``split`` is a list."""
    out: dict[str, Any] = {}
    for key, value in _check_table(path, where, table).items():
        if key not in DATASET_KEYS:
            raise _unknown(path, where, key, list(DATASET_KEYS))
        if key == "split" and isinstance(value, list):
            continue
        out[DATASET_KEYS[key]] = check_value(path, f"{where} {key}", value, settings[DATASET_KEYS[key]])
    splits = table.get("split")
    if not isinstance(splits, list):
        return [out]
    if not splits:
        raise _fail(path, f"{where} split", "expected a split or a non-empty list of splits, got []")
    return [{**out, "split": check_value(path, f"{where} split", s, settings["split"])} for s in splits]


def _datasets(path: str, value: Any, settings: Mapping[str, Setting]) -> list[dict[str, Any]]:
    """The runs of the [[datasets]] array (each table once per split)."""
    if not isinstance(value, list) or not value:
        raise _fail(path, "datasets", f"expected one or more [[datasets]] tables, got {value!r}")
    return [run for i, table in enumerate(value) for run in _dataset_runs(path, f"[[datasets]] #{i + 1}", table, settings)]


def parse_sweep(text: str, path: str, settings: Mapping[str, Setting]) -> Sweep:
    """Check a sweep file's text; ``settings`` has every option a [run] table may set (and ``codecs``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML: {exc}") from None
    for key in doc:
        if key not in _TOP_KEYS:
            raise _unknown(path, "top level", key, list(_TOP_KEYS))
    run = _check_run(path, doc.get("run", {}), settings)
    if "codecs" in doc:
        if "codecs" in run:
            raise _fail(path, "codecs", "given both at the top and in [run]; keep one")
        run["codecs"] = _codecs_text(path, doc["codecs"], settings["codecs"])
    datasets = _datasets(path, doc["datasets"], settings) if "datasets" in doc else []
    both = [k for k in DATASET_CHOICE if k in run]
    if datasets and both:
        raise _fail(path, f"[run] {both[0]}", "the dataset is chosen by [[datasets]] here; drop one of the two")
    return Sweep(path, text, hashlib.sha256(text.encode()).hexdigest(), run, tuple(datasets))


def load_sweep(path: str | Path, settings: Mapping[str, Setting]) -> Sweep:
    """Read and check a sweep file (UTF-8 TOML); SweepError when it cannot be read or has a mistake."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{path}: cannot read it ({exc})") from None
    return parse_sweep(text, str(path), settings)
