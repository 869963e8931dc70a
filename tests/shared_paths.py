"""Where the tests find ``shared/``: the real audio and metric reference values they use when present.

The folder is ``$BENCH_SHARED_DIR`` when that is set and not empty, else ``shared/`` beside the checkout
(``../shared`` from the repository root). Tests that need it skip cleanly when it is absent, so a run
"without shared" (a fresh clone on a user's machine) is simulated with ``BENCH_SHARED_DIR=/nonexistent``.
Every test module takes its paths from here (never from ``__file__``), so the variable reaches all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR = (Path(os.environ["BENCH_SHARED_DIR"]).expanduser().resolve() if os.environ.get("BENCH_SHARED_DIR")
              else Path(__file__).resolve().parents[2] / "shared")
SHARED_AUDIO = SHARED_DIR / "audio"
METRICS_REF = SHARED_DIR / "metrics-ref"

#: small reference files committed with the tests (see tests/assets/README.md)
ASSETS = Path(__file__).resolve().parent / "assets"


def metrics_ref_file(rel: str) -> Path:
    """A file of ``metrics-ref`` (path relative to it): the shared copy when present, else the committed one."""
    shared = METRICS_REF / rel
    return shared if shared.exists() else ASSETS / "metrics-ref" / rel
