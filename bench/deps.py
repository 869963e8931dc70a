"""Optional backends: which extra installs a package, and one clear error when one is missing.

The core install is lean; heavy backends come as extras of the ``bench`` distribution (see
pyproject.toml). Code that needs one calls :func:`require` first, so a missing backend is one
line naming the ``pip install`` that fixes it (exit 2), never an ImportError traceback.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from typing import Iterable

from bench.errors import UserError

#: distribution -> the bench extra that installs it
EXTRA_OF = {
    "pesq": "pesq", "pystoi": "stoi", "visqol-python": "visqol", "pocketsphinx": "asr", "jiwer": "asr",
    "speechmos": "dnsmos", "onnxruntime": "dnsmos", "pandas": "reports", "matplotlib": "reports",
    "espeakng-loader": "demo", "datasets": "hf", "constriction": "entropy", "transformers": "hf",
    "huggingface_hub": "hf", "huggingface-hub": "hf", "snac": "snac", "einops": "snac", "pyarrow": "parquet", "ray": "ray",
    "librosa": "pitch", "whisper-normalizer": "asr",
}


class MissingBackendError(UserError):
    """A feature whose backend package is not installed; the message says which extra installs it."""


@lru_cache(maxsize=None)
def installed(distribution: str) -> bool:
    """Whether a distribution is installed (by its pip name)."""
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing(distributions: Iterable[str]) -> list[str]:
    """The distributions of ``distributions`` that are not installed."""
    return [d for d in distributions if not installed(d)]


def install_hint(distributions: Iterable[str]) -> str:
    """``pip install 'bench[extra,...]'`` for the given distributions (the package names where no extra has them)."""
    names = list(distributions)
    extras = sorted({EXTRA_OF[d] for d in names if d in EXTRA_OF})
    others = [d for d in names if d not in EXTRA_OF]
    parts = ([f"'bench[{','.join(extras)}]'"] if extras else []) + others
    return "pip install " + " ".join(parts)


def require(distributions: Iterable[str], what: str) -> None:
    """Raise MissingBackendError when any of ``distributions`` is missing; ``what`` names the feature."""
    absent = missing(distributions)
    if absent:
        raise MissingBackendError(f"{what} needs {', '.join(absent)}, which is not installed: {install_hint(absent)}")
