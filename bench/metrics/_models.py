"""Weights of model-backed metrics (speaker similarity, ASR, MOS predictors, FAD embeddings): where, which, hashed.

Every model-backed metric names its weights the same way: an environment variable (``BENCH_<NAME>_MODEL``)
holding a local folder in the layout ``save_pretrained`` writes (``config.json`` + ``model.safetensors``)
or a Hugging Face model id looked up in the local cache; unset, the metric's default hub id. Nothing is
downloaded here (``bench weights fetch HUB_ID`` is the one command that downloads) and pickles are never
loaded (:func:`bench.hub.check_folder` refuses a folder with only ``pytorch_model.bin``).

:func:`model_info` is what a spec's ``model_info`` callable returns: the source, the resolved folder and
the SHA-256 of its weights. It enters the metric's fingerprint (so resume recomputes a metric whose weights
changed instead of serving values of other weights) and the run manifest (provenance). Missing weights
give ``{"error": ...}``, and the metric then scores every item NaN with that reason.

Models are loaded once per process and device (:func:`load_cached`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from bench.errors import UserError

_LOADED: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def model_source(env_var: str, default_hub_id: str) -> str:
    """The weights a metric uses: ``$env_var`` when set (a folder or hub id), else ``default_hub_id``."""
    return (os.environ.get(env_var) or "").strip() or default_hub_id


def resolve_model(env_var: str, default_hub_id: str) -> Path:
    """The checked local folder of the metric's weights; raises :class:`MissingWeights` with the fix when absent."""
    from bench.hub import fetch_hint, resolve_weights

    source = model_source(env_var, default_hub_id)
    try:
        return resolve_weights(source, default_hub_id)
    except UserError as exc:
        raise MissingWeights(f"{exc} (or set {env_var} to a local folder; `{fetch_hint(default_hub_id)}` "
                             "fetches the default)") from exc


class MissingWeights(RuntimeError):
    """A model-backed metric's weights are not on disk; the message says how to get them."""


def model_info(env_var: str, default_hub_id: str, **extra: Any) -> dict[str, Any]:
    """``{"model", "folder", "weights_sha256", **extra}`` of the metric's weights, or ``{"model", "error"}``."""
    from bench.hub import weights_sha256

    info: dict[str, Any] = {"model": model_source(env_var, default_hub_id), "env": env_var, **extra}
    try:
        folder = resolve_model(env_var, default_hub_id)
    except MissingWeights as exc:
        info["error"] = str(exc)
        return info
    info["folder"] = str(folder)
    info["weights_sha256"] = weights_sha256(folder)
    return info


def _weights_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of each safetensors file in ``folder``: weights re-saved in place change it."""
    stamps = []
    for path in sorted(folder.glob("*.safetensors")):
        stat = path.stat()
        stamps.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def load_cached(kind: str, folder: Path, device: str, build: Callable[[Path, str], Any]) -> Any:
    """``build(folder, device)`` once per process for (kind, folder, device, weights files); later calls return it.

    The key holds each weights file's size and mtime, so weights re-saved into the same folder are loaded
    again rather than served from the earlier model (the fingerprint would already name the new weights).
    """
    resolved = Path(folder).resolve()
    key = (kind, str(resolved), str(device), _weights_stamp(resolved))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = build(Path(folder), device)
        return _LOADED[key]
