"""Allowed ranges of numeric options, checked the same way on the command line and in the library.

``bench.cli.args`` builds its argparse types from :class:`NumberRange`; library entry points that
take the same values (``bench.gate.gate``) check them with it too, so both refuse the same values
with the same message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NumberRange:
    """An allowed range of a numeric option: integers or finite floats in [lo, hi] (bounds optional, maybe open)."""

    integer: bool
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def parse(self, text: str) -> float | int:
        """The value of ``text``, or ValueError with the message the command line gives for it."""
        kind = int if self.integer else float
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected {'an integer' if self.integer else 'a number'}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise ValueError(f"must be {'>' if self.lo_open else '>='} {self.lo}, got {text}")
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            raise ValueError(f"must be {'<' if self.hi_open else '<='} {self.hi}, got {text}")
        return value
