"""Which torch device a run uses: ``auto`` is CUDA when this machine has it, else the CPU."""

from __future__ import annotations

AUTO = "auto"


def resolve_device(name: str | None) -> str:
    """``auto`` (or None) -> ``cuda`` when a CUDA device is visible, else ``cpu``; any other name unchanged."""
    if name not in (None, AUTO):
        return str(name)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
