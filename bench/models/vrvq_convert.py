"""The official VRVQ release's weights in our :class:`~bench.models.vrvq_model.VRVQ`, as a bench checkpoint.

The official code (``lixinghe1999/VRVQ``, built on descript-audio-codec's modules) saves
``{"model_state_dict": generator.state_dict(), ...}``. Its layout is DAC's original one (see
:func:`bench.models.dac_convert.state_dict_from_original`, reused here for the backbone) plus the
importance subnetwork inside the quantizer:

* ``quantizer.imp_subnet.in_block.{0,1}``  -> our ``importance.blocks.0.{0,1}`` (Snake, WN conv k=3);
* ``quantizer.imp_subnet.blocks.{i}.{0,1}`` -> our ``importance.blocks.{i+1}.{0,1}``.

Convolutions use the old ``weight_g``/``weight_v`` weight norm, mapped onto our parametrised
``original0``/``original1``. There is no running-RMS buffer: the published widths keep the paper's
unnormalised importance input (``importance_input_norm=False``). :func:`convert_vrvq_release`
writes the result once as safetensors + JSON card under ``generator.``, so the ``vrvq`` codec loads
it with ``--codecs vrvq:PATH``; its ``torch.load(..., weights_only=True)`` reads only tensors and
plain containers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError
from bench.models.checkpoint import module_tensors, save_checkpoint, sha256_file
from bench.models.dac_convert import (
    WN_V,
    _count_blocks,
    _load_strict,
    _normalise_weight_norm,
    config_from_state,
    state_dict_from_original,
)
from bench.models.vrvq_model import VRVQ, VRVQConfig

IMP_PREFIX = "quantizer.imp_subnet."
#: the rate the paper's published model codes (the DAC 44.1 kHz backbone), used when none is given or recorded
DEFAULT_SAMPLE_RATE_HZ = 44100
RELEASE_LICENCE = "as published with the official VRVQ release (lixinghe1999/VRVQ); check it before redistributing"


def _importance_key(key: str) -> str:
    """Our ``importance.blocks.*`` name of one official ``quantizer.imp_subnet.*`` weight."""
    rest = key[len(IMP_PREFIX):]
    if rest.startswith("in_block."):
        return "importance.blocks.0." + rest[len("in_block."):]
    m = re.match(r"^blocks\.(\d+)\.", rest)
    if not m:
        raise UserError(f"unexpected VRVQ importance weight {key!r}: not part of the published architecture")
    return f"importance.blocks.{int(m.group(1)) + 1}.{rest[m.end():]}"


def state_dict_from_release(original: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our :class:`VRVQ` state dict from the official generator's ``state_dict()``."""
    backbone = {k: v for k, v in original.items() if not k.startswith(IMP_PREFIX)}
    importance = {_importance_key(k): v for k, v in original.items() if k.startswith(IMP_PREFIX)}
    if not importance:
        raise UserError("no quantizer.imp_subnet weights: this is not a VRVQ release (a plain DAC? use "
                        "'bench weights convert' without --model vrvq)")
    return {**state_dict_from_original(backbone), **_normalise_weight_norm(importance)}


def config_from_release_state(state: Mapping[str, torch.Tensor], sample_rate_hz: int) -> VRVQConfig:
    """The VRVQ config that fits our converted ``state``: backbone and importance widths from shapes."""
    n_blocks = _count_blocks(list(state), "importance.blocks")
    widths = tuple(int(state[f"importance.blocks.{i}.1{WN_V}"].shape[0]) for i in range(n_blocks - 1))
    return VRVQConfig(config_from_state(state, sample_rate_hz), importance_widths=widths,
                      importance_input_norm=False)


def _read_vrvq_release(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The generator state dict and metadata of an official VRVQ ``.pth`` (tensors and plain containers only)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError and others
        raise UserError(f"{path}: cannot read it as a VRVQ release with weights_only=True "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(blob, Mapping) or not isinstance(blob.get("model_state_dict"), Mapping):
        raise UserError(f"{path}: not a VRVQ release (expected a dict with a 'model_state_dict' entry)")
    state = {str(k).removeprefix("module."): v for k, v in blob["model_state_dict"].items()
             if isinstance(v, torch.Tensor)}
    if not state:
        raise UserError(f"{path}: no tensors in the VRVQ release's model_state_dict")
    meta = blob.get("metadata", {})
    return state, dict(meta) if isinstance(meta, Mapping) else {}


def _release_rate(meta: Mapping[str, Any], sample_rate_hz: int | None) -> int:
    """The sample rate: the one given, else the release's record, else the paper's 44.1 kHz."""
    kwargs = meta.get("kwargs", {})
    recorded = meta.get("sample_rate") or (kwargs.get("sample_rate") if isinstance(kwargs, Mapping) else None)
    return int(sample_rate_hz or recorded or DEFAULT_SAMPLE_RATE_HZ)


def convert_vrvq_release(path_pth: str | Path, out_safetensors: str | Path, *,
                         sample_rate_hz: int | None = None) -> Path:
    """Convert an official VRVQ ``.pth`` into a bench checkpoint the ``vrvq`` codec loads; returns its weights path.

    The card names the model ``"vrvq"``, records the architecture, the source file's name and
    SHA-256 and the licence; tensors go under ``generator.``. ``sample_rate_hz`` overrides the rate
    (default: the file's record, else 44100, the published model's rate).
    """
    src = Path(path_pth)
    if not src.is_file():
        raise UserError(f"{src}: no such VRVQ release file")
    original, meta = _read_vrvq_release(src)
    state = state_dict_from_release(original)
    config = config_from_release_state(state, _release_rate(meta, sample_rate_hz))
    model = VRVQ(config)
    _load_strict(model, state, str(src))
    bb = config.backbone
    card = {
        "model": "vrvq",
        "name": f"vrvq_{round(bb.sample_rate_hz / 1000)}khz_release",
        "config": config.to_dict(),
        "licence": RELEASE_LICENCE,
        "source": {"kind": "official VRVQ release", "file": src.name, "sha256": sha256_file(src)},
        "training": {"steps": "official release", "device": "n/a (converted)"},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "nominal_kbps": round(bb.kbps(bb.n_codebooks), 4),
        "frame_rate_hz": round(bb.frame_rate_hz, 4),
    }
    return save_checkpoint(out_safetensors, module_tensors("generator", model), card)
