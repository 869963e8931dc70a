"""Weights of published codecs: a local folder or the local Hugging Face cache, offline by default.

A published codec is named ``NAME`` (its default hub id), ``NAME:PATH`` (a folder in the layout
``save_pretrained`` writes: ``config.json`` + ``model.safetensors``) or ``NAME:HUB_ID``
(``facebook/encodec_24khz``), looked up in the Hugging Face cache (``$HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) without touching the network. Only ``bench weights fetch HUB_ID``
downloads, through ``huggingface_hub``, and only JSON and safetensors files.

Pickles are never loaded: a folder holding only ``pytorch_model.bin`` is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

from bench.errors import UserError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_FILES = ("pytorch_model.bin", "model.bin", "model.pt", "model.ckpt")
#: what ``fetch_weights`` downloads: configs, safetensors weights, the model card (never a pickle)
FETCH_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "LICENSE*"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def fetch_hint(hub_id: str) -> str:
    """The command that puts ``hub_id`` in the local cache (named by every missing-weights error)."""
    return f"bench weights fetch {hub_id}"


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the form ``owner/name`` of a Hugging Face model id."""
    return bool(_HUB_ID.match(text))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read at call time (``$HF_HUB_CACHE`` / ``$HF_HOME/hub``).

    Without ``huggingface_hub`` installed, the same defaults it uses (so codec modules still import).
    """
    try:
        from huggingface_hub import constants
    except ImportError:
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return Path(os.environ.get("HF_HUB_CACHE", os.path.join(home, "hub")))
    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(hub_id: str, revision: str = "main") -> Path | None:
    """The cached snapshot folder of ``hub_id`` holding the weights, or None; a cheap path lookup, no network.

    Follows the cache layout ``models--OWNER--NAME/refs/REVISION`` -> ``snapshots/COMMIT``; used to
    decide whether a published codec is part of ``--codecs all``.
    """
    repo = hub_cache_dir() / f"models--{hub_id.replace('/', '--')}"
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    folder = repo / "snapshots" / commit
    return folder if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file() else None


def _snapshot_offline(hub_id: str, revision: str | None) -> Path:
    """``snapshot_download(local_files_only=True)``: the cached folder, or a UserError naming the fetch command."""
    _require_hub()
    from huggingface_hub import snapshot_download

    try:
        # the same patterns as the fetch: a repo that also ships a pickle is complete without it
        folder = snapshot_download(hub_id, revision=revision, cache_dir=hub_cache_dir(), local_files_only=True,
                                   allow_patterns=FETCH_PATTERNS)
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError, IncompleteSnapshotError, OSError: not usable
        raise UserError(f"weights {hub_id!r} are not in the local Hugging Face cache ({hub_cache_dir()}); "
                        f"run `{fetch_hint(hub_id)}` first") from exc
    return Path(folder)


def _require_hub() -> None:
    """Raise a one-line UserError when ``huggingface_hub`` is not installed."""
    import importlib.util

    if importlib.util.find_spec("huggingface_hub") is None:
        raise UserError("published codecs' weights need huggingface_hub: pip install huggingface_hub")


def resolve_weights(source: str, default_hub_id: str, revision: str | None = None) -> Path:
    """The folder holding ``config.json`` and ``model.safetensors`` for ``source``, checked; never downloads.

    ``source`` is a local folder (tried first when it exists or looks like a path) or a hub id found
    in the cache. Anything else is a one-line :class:`UserError` naming ``bench weights fetch``.
    """
    path = Path(source).expanduser()
    if path.exists() or not is_hub_id(source):
        if not path.is_dir():
            raise UserError(f"weights folder {source!r} does not exist; give a folder written by save_pretrained, "
                            f"or a hub id fetched with `{fetch_hint(default_hub_id)}`")
        return check_folder(path, hint=default_hub_id)
    return check_folder(_snapshot_offline(source, revision), hint=source)


def check_folder(folder: Path, hint: str) -> Path:
    """``folder`` if it has a config and safetensors weights; a pickle-only or empty folder raises UserError."""
    if not (folder / CONFIG_FILE).is_file():
        raise UserError(f"{folder} has no {CONFIG_FILE}: not a Hugging Face model folder "
                        f"(write one with save_pretrained, or run `{fetch_hint(hint)}`)")
    if not (folder / WEIGHTS_FILE).is_file():
        pickles = [name for name in PICKLE_FILES if (folder / name).is_file()]
        if pickles:
            raise UserError(f"{folder} has only {pickles[0]} (a pickle, which bench never loads); convert it to "
                            f"{WEIGHTS_FILE} (save_pretrained(..., safe_serialization=True)) or run "
                            f"`{fetch_hint(hint)}`")
        raise UserError(f"{folder} has no {WEIGHTS_FILE}; run `{fetch_hint(hint)}` or give a folder that has one")
    return folder


def weights_sha256(folder: Path) -> str:
    """Hex SHA-256 of ``folder/model.safetensors`` (cached per path, size and mtime: hashed once per process)."""
    path = (folder / WEIGHTS_FILE).resolve()
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of one file; ``size`` and ``mtime_ns`` only key the cache."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch_weights(hub_id: str, revision: str | None = None) -> Path:
    """Download ``hub_id`` (JSON and safetensors only) into the Hugging Face cache; the one place bench downloads.

    A malformed id, a repository that does not exist, no network or a repository without
    ``model.safetensors`` is a one-line UserError.
    """
    if not is_hub_id(hub_id):
        raise UserError(f"{hub_id!r} is not a Hugging Face model id (expected OWNER/NAME, e.g. facebook/encodec_24khz)")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise UserError(f"cannot fetch {hub_id!r}: HF_HUB_OFFLINE is set; unset it to download")
    _require_hub()
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(hub_id, revision=revision, cache_dir=hub_cache_dir(),
                                   allow_patterns=FETCH_PATTERNS)
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all one line for the user
        raise UserError(f"could not fetch {hub_id!r}: {type(exc).__name__}: {exc}") from exc
    return check_folder(Path(folder), hint=hub_id)
