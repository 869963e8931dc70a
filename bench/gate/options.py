"""The gate's numeric options: defaults, ranges, and their check for programmatic callers.

The command line (``bench.cli.gate``) builds its argparse types from the ranges here, and
:func:`check_options` applies the same ranges, with the same messages, to the arguments of
:func:`bench.gate.gate` and :func:`bench.gate.evaluate`, so a value the command line refuses is
refused there too (as a :class:`GateError` naming the option).
"""

from __future__ import annotations

from bench.gate.common import GateError
from bench.ranges import NumberRange

DEFAULT_MARGIN = "1%"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_KBPS_TOLERANCE = 0.05
DEFAULT_BOOTSTRAP = 2000
MAX_BOOTSTRAP = 1_000_000  # the resampling index matrix is n_boot x n_clusters integers


BOOTSTRAP = NumberRange(integer=True, lo=1, hi=MAX_BOOTSTRAP)
CONFIDENCE = NumberRange(integer=False, lo=0.5, hi=1.0, lo_open=True, hi_open=True)
KBPS_TOLERANCE = NumberRange(integer=False, lo=0.0)
SEED = NumberRange(integer=True, lo=0)


def _checked(option: str, allowed: NumberRange, value: object) -> float | int:
    """A programmatic argument read as its command-line option would read its text."""
    try:
        return allowed.parse(str(value))
    except ValueError as exc:
        raise GateError(f"{option}: {exc}") from None


def check_options(confidence: float, kbps_tolerance: float, n_boot: int, seed: int) -> tuple[float, float, int, int]:
    """The numeric options, range-checked as on the command line; returns them parsed."""
    return (float(_checked("--confidence", CONFIDENCE, confidence)),
            float(_checked("--kbps-tolerance", KBPS_TOLERANCE, kbps_tolerance)),
            int(_checked("--bootstrap", BOOTSTRAP, n_boot)),
            int(_checked("--seed", SEED, seed)))
