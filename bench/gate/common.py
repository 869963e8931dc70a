"""What every part of the gate shares: its error type and the coercions of stored values.

Values come from SQLite rows (through pandas) and from JSON documents, so a missing value may be
None or NaN; these helpers turn both into None, once, the same way for the baseline and the
candidate.
"""

from __future__ import annotations

import math
from typing import Any

from bench.errors import UserError


class GateError(UserError, RuntimeError):
    """A problem that prevents a verdict (bad baseline, missing items, failed run): exit code 2."""


def finite_or_none(x: Any) -> float | None:
    """``x`` as a finite float, else None (a failed or missing value is never a number)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def str_or_none(x: Any) -> str | None:
    """``x`` as a string; None for None and NaN (pandas' missing value)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def codec_family(codec_key: str) -> str:
    """The codec family of a codec key (``toy`` of ``toy:/ckpts/v1.safetensors``): what a checkpoint replaces."""
    return codec_key.split(":", 1)[0]
