"""Checkpoints: safetensors weights plus a JSON card, and nothing else.

A checkpoint is two files side by side: ``NAME.safetensors`` (tensors only, never pickle) and
``NAME.json`` (the card: format, model family, architecture config, training data and licences,
steps, wall time, device, validation metrics, and the SHA-256 of the weights file). Loading checks
the card against the weights and refuses a pickle (``.pt``/``.pth``/``.ckpt``) with a clear error
instead of unpickling it.

Training state for ``--resume`` (optimisers, schedulers) is saved the same way: optimiser tensors in
safetensors, the rest of their state in the JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError

CARD_FORMAT = "bench-checkpoint"
CARD_VERSION = 1
PICKLE_MAGICS = (b"PK\x03\x04", b"\x80")  # torch.save zip archives, raw pickles


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, malformed, not safetensors, or does not match its card."""


def card_path(weights_path: str | Path) -> Path:
    """The JSON card beside a weights file: same name, ``.json`` suffix."""
    return Path(weights_path).with_suffix(".json")


def weights_path(path: str | Path) -> Path:
    """Accept ``NAME``, ``NAME.safetensors`` or ``NAME.json``; return the weights path."""
    p = Path(path)
    if p.suffix == ".json":
        return p.with_suffix(".safetensors")
    if p.suffix == "":
        return p.with_suffix(".safetensors")
    return p


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (the card records it to detect modified weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _check_safetensors_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint weights not found")
    with open(path, "rb") as f:
        head = f.read(9)
    if any(head.startswith(m) for m in PICKLE_MAGICS) or path.suffix in {".pt", ".pth", ".ckpt", ".bin", ".pkl"}:
        raise CheckpointError(
            f"{path}: not a safetensors file (looks like a PyTorch pickle). bench never unpickles "
            "checkpoints; convert it to safetensors with a JSON card (bench.models.checkpoint.save_checkpoint)")
    if len(head) < 9 or head[8:9] != b"{":
        raise CheckpointError(f"{path}: not a safetensors file (bad header)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > path.stat().st_size:
        raise CheckpointError(f"{path}: truncated safetensors file")


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], card: dict[str, Any], *,
                    half: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its card (.json) atomically; returns the weights path.

    ``card`` must name the ``model`` family and its ``config``. ``half=True`` stores floating tensors
    as float16 (the card records it; loading casts back to float32).
    """
    from safetensors.torch import save_file

    for key in ("model", "config"):
        if key not in card:
            raise ValueError(f"checkpoint card needs a {key!r} entry")
    path = weights_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        if half and t.is_floating_point():
            t = t.half()
        out[name] = t.contiguous().clone()
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp), metadata={"format": CARD_FORMAT, "model": str(card["model"])})
    os.replace(tmp, path)
    full = dict(card)
    full.update(format=CARD_FORMAT, format_version=CARD_VERSION, weights_file=path.name,
                weights_sha256=sha256_file(path), weights_dtype="float16" if half else "float32",
                num_tensors=len(out))
    tmp_card = card_path(path).with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    os.replace(tmp_card, card_path(path))
    return path


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of a checkpoint (cheap: does not read the weights)."""
    wpath = weights_path(path)
    if Path(path).suffix in {".pt", ".pth", ".ckpt", ".bin", ".pkl"}:
        _check_safetensors_file(Path(path))
    cpath = card_path(wpath)
    if not cpath.exists():
        raise CheckpointError(f"{wpath}: no card {cpath.name} beside it; a bench checkpoint is "
                              "NAME.safetensors plus NAME.json")
    try:
        card = json.loads(cpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cpath}: card is not valid JSON ({exc})") from exc
    if card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{cpath}: not a bench checkpoint card (format={card.get('format')!r})")
    if int(card.get("format_version", 0)) > CARD_VERSION:
        raise CheckpointError(f"{cpath}: card version {card.get('format_version')} is newer than this build")
    return card


def codec_card(model: str, checkpoint: str | None, default_path: Path, config_hint: str = "small") -> dict[str, Any]:
    """The card of the checkpoint a codec adapter should load, checked for the right model.

    ``checkpoint`` is what the user passed (``--codecs MODEL:PATH``) or None for the shipped
    ``default_path``. Errors name the file and how to get a usable one.
    """
    path = weights_path(checkpoint) if checkpoint else default_path
    given = Path(checkpoint) if checkpoint else None
    if not path.exists() and not (given is not None and given.is_file()):
        hint = (f"the shipped {model.upper() if model != 'eulerodec' else 'EuleroDec'} checkpoint is missing from "
                "this installation" if not checkpoint else "no such checkpoint")
        raise CheckpointError(f"{model}: {hint}: {path}. Train one with 'bench train {model} --config {config_hint} "
                              f"...' and pass it as --codecs {model}:PATH")
    card = read_card(checkpoint or path)
    if card.get("model") != model:
        raise CheckpointError(f"{path}: checkpoint is for model {card.get('model')!r}, not {model!r}")
    if card.get("kind") == "training-state":
        raise CheckpointError(f"{path}: this is a training state for --resume; use the exported "
                              f"{model}_<config>.safetensors beside it")
    return card


def load_checkpoint(path: str | Path, *, model: str | None = None, verify_hash: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (tensors as float32, card). Refuses pickles, missing cards, wrong model family, bad hashes."""
    from safetensors.torch import load_file

    wpath = weights_path(path)
    _check_safetensors_file(Path(path) if Path(path).suffix not in {"", ".json"} else wpath)
    card = read_card(wpath)
    if model is not None and card.get("model") != model:
        raise CheckpointError(f"{wpath}: checkpoint is for model {card.get('model')!r}, not {model!r}")
    if verify_hash and card.get("weights_sha256") and sha256_file(wpath) != card["weights_sha256"]:
        raise CheckpointError(f"{wpath}: weights do not match the SHA-256 in the card (modified or corrupt)")
    try:
        tensors = load_file(str(wpath))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{wpath}: cannot read safetensors ({exc})") from exc
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    return tensors, card


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict with ``prefix.`` on every key (unwraps DDP)."""
    module = getattr(module, "module", module)
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, *,
                source: str = "checkpoint") -> None:
    """Load the ``prefix.*`` tensors into ``module`` strictly; errors name the missing/unexpected keys."""
    module = getattr(module, "module", module)
    sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    try:
        result = module.load_state_dict(sub, strict=False)
    except RuntimeError as exc:  # shape mismatches: another configuration's weights
        first = str(exc).split("\n\t", 2)[1:2] or [str(exc)]
        raise CheckpointError(f"{source}: weights do not fit the {prefix} architecture ({first[0].strip()})") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: weights do not fit the {prefix} architecture "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})")


# ---- optimiser/scheduler state for --resume ---------------------------------------------------
def optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (for safetensors) and JSON-able metadata."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_tensors`: rebuild the state dict from tensors and metadata and load it."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        pid, key = name[len(prefix) + 1:].split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
