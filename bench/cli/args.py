"""Checked argument types for the command line: every numeric option's range, every path's use.

Each function takes the option's text and returns the parsed value or raises
``argparse.ArgumentTypeError`` with a message naming the problem; argparse turns that into one
line and exit code 2 (see ``bench.cli``). Paths are checked for what the command will do with
them (read a file, write into a folder), so a mistake is caught before any work starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, NoReturn

from bench.ranges import NumberRange

ArgType = Callable[[str], object]


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: ...`` and exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit with code 2 (argparse's own error prints the usage too)."""
        from bench.errors import EXIT_USAGE, one_line

        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def range_arg(allowed: NumberRange, name: str | None = None) -> ArgType:
    """An argparse type that parses a value in ``allowed`` (ArgumentTypeError with the reason otherwise)."""

    def parse(text: str) -> float | int:
        try:
            return allowed.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name or ("integer" if allowed.integer else "number")
    return parse


def int_range(lo: int | None = None, hi: int | None = None) -> ArgType:
    """An integer in [lo, hi] (either bound may be open)."""
    return range_arg(NumberRange(integer=True, lo=lo, hi=hi), "integer")


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> ArgType:
    """A finite float in [lo, hi]; ``lo_open``/``hi_open`` exclude the bound itself."""
    return range_arg(NumberRange(integer=False, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open), "number")


positive_int = int_range(1)
non_negative_int = int_range(0)


def optional_lufs(text: str) -> float | None:
    """A loudness target in LUFS (-70 .. 0), or 'none' for no normalisation."""
    if text.strip().lower() in ("none", "off"):
        return None
    return float_range(-70.0, 0.0)(text)  # type: ignore[return-value]


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` with a non-empty key."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def existing_file(text: str) -> str:
    """A path to an existing, readable regular file."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text}")
    return str(path)


def existing_path(text: str) -> str:
    """A path that exists (file or folder)."""
    if not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return str(Path(text).expanduser())


def existing_dir(text: str) -> str:
    """A path to an existing folder."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{'not a folder' if path.exists() else 'no such folder'}: {text}")
    return str(path)


def _writable_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if it is a folder we may write into, else None."""
    p = path
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    return p if p.is_dir() and os.access(p, os.W_OK | os.X_OK) else None


def writable_dir(text: str) -> str:
    """A folder that exists and is writable, or that can be created (nothing is created here)."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot write into {text}")
        return str(path)
    if _writable_ancestor(path) is None:
        raise argparse.ArgumentTypeError(f"cannot create folder {text} (parent missing or not writable)")
    return str(path)


def writable_file(text: str) -> str:
    """A file path we may create or overwrite (its folder may be created)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, expected a file path")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot overwrite {text}")
        return str(path)
    if _writable_ancestor(path.parent) is None:
        raise argparse.ArgumentTypeError(f"cannot create {text} (folder missing or not writable)")
    return str(path)


def check_env_dir(name: str) -> None:
    """Raise UserError when environment variable ``name`` names something that is not a usable folder."""
    from bench.errors import UserError

    value = os.environ.get(name)
    if not value:
        return
    try:
        writable_dir(value)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"${name}: {exc}") from None


def ray_address(text: str) -> str:
    """A Ray cluster address: ``auto``, ``local`` or ``HOST:PORT`` (``ray://HOST:PORT`` for Ray Client)."""
    import re

    if text in ("auto", "local") or re.fullmatch(r"(ray://)?[A-Za-z0-9_.\-]+:[0-9]{1,5}", text):
        return text
    raise argparse.ArgumentTypeError(f"not a Ray address: {text!r} (use auto, or HOST:PORT as 'ray start' printed)")


def torch_device(text: str) -> str:
    """A torch device string that exists on this machine (checked before any work starts); ``auto`` passes."""
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type not in ("cpu", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (use cpu or cuda)")
    return text
