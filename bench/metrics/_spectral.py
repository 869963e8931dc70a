"""Shared helpers for the torch spectral metrics (mel, stft, lsd, gdd) and SI-SDR.

Private module (leading underscore: the metric registry does not import it as a metric).
Everything here is batched over the first axis and keeps the device and dtype of its input.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from bench.metrics.base import MetricError, MetricValue, failed


def as_batch(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return ``x`` as a floating tensor ``[B, T]`` (a 1-D signal becomes ``[1, T]``)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        raise MetricError(f"{name} must be [B, T] (got shape {tuple(x.shape)})")
    if dtype is not None:
        x = x.to(dtype)
    elif not torch.is_floating_point(x):
        x = x.float()
    return x


def check_pair(preds: Any, target: Any, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert a (preds, target) pair: same shape ``[B, T]``, same device."""
    p = as_batch(preds, "preds", dtype)
    t = as_batch(target, "target", dtype)
    if p.shape != t.shape:
        raise MetricError(f"preds {tuple(p.shape)} and target {tuple(t.shape)} differ in shape; "
                          "align lengths before scoring")
    if dtype is None and p.dtype != t.dtype:
        common = torch.promote_types(p.dtype, t.dtype)
        p, t = p.to(common), t.to(common)
    return p, t.to(p.device)


def require_rate(sample_rate_hz: int | None, metric: str) -> int:
    """Rate-dependent metrics need the rate of the signals they get."""
    if sample_rate_hz is None or int(sample_rate_hz) <= 0:
        raise MetricError(f"{metric} needs the sample rate of the signals (got {sample_rate_hz!r})")
    return int(sample_rate_hz)


@functools.lru_cache(maxsize=64)
def _hann_cpu64(window_length: int) -> torch.Tensor:
    # periodic Hann == scipy.signal.get_window("hann", N) (fftbins=True), computed in float64
    return torch.hann_window(window_length, periodic=True, dtype=torch.float64)


_WINDOWS: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}


def hann_window(window_length: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """Periodic Hann window, cached per (length, device, dtype)."""
    key = (int(window_length), str(device), dtype)
    w = _WINDOWS.get(key)
    if w is None:
        w = _hann_cpu64(int(window_length)).to(device=device, dtype=dtype)
        _WINDOWS[key] = w
    return w


def min_samples_for_stft(n_fft: int) -> int:
    """Fewest samples that ``torch.stft(center=True, pad_mode="reflect")`` accepts."""
    return n_fft // 2 + 1


def stft(x: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Complex STFT ``[B, n_fft//2+1, frames]``: periodic Hann of length n_fft, center=True, reflect padding."""
    window = hann_window(n_fft, x.device, x.dtype)
    return torch.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window=window,
                      center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)


# complex STFT elements per block and pair of rows (one preds row and its target): about 128 MB in
# complex64. Per pair, not per batch: how the frames are cut into blocks (and so the order of the sums
# accumulated over blocks) depends only on the signal's length, never on how many items share a batch.
STFT_BLOCK_ELEMENTS = 16_000_000


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames of ``torch.stft(center=True)``: 1 + T // hop."""
    return 1 + num_samples // hop_length


def stft_blocks(x: torch.Tensor, n_fft: int, hop_length: int, max_elements: int | None = None
                ) -> Iterator[torch.Tensor]:
    """Yield the frames of :func:`stft` in consecutive blocks ``[B, F, n]`` of bounded size.

    Identical frames to one ``stft(x)`` call (the reflect padding is applied once to the whole signal,
    then each block is framed without centring), so per-frame statistics can be accumulated over blocks
    and long items (minutes of 48 kHz audio with a hop of 8) do not need gigabytes at once. The block
    length is set by ``max_elements`` per pair of rows (``x`` holds preds and targets): the same blocks,
    and so the same values, for an item scored alone or in a batch; a batch's memory grows with its size.
    """
    max_elements = STFT_BLOCK_ELEMENTS if max_elements is None else max_elements
    frames = num_frames(x.shape[-1], hop_length)
    bins = n_fft // 2 + 1
    per_block = max(1, max_elements // (2 * bins))
    if frames <= per_block:
        yield stft(x, n_fft, hop_length)
        return
    half = n_fft // 2
    padded = torch.nn.functional.pad(x.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
    window = hann_window(n_fft, x.device, x.dtype)
    for k0 in range(0, frames, per_block):
        k1 = min(frames, k0 + per_block)
        segment = padded[..., k0 * hop_length:(k1 - 1) * hop_length + n_fft]
        yield torch.stft(segment, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window=window,
                         center=False, normalized=False, onesided=True, return_complex=True)


def finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B]``: rows whose samples are all finite."""
    return torch.isfinite(x).all(dim=-1)


def screen(preds: torch.Tensor, target: torch.Tensor, *, min_samples: int = 1,
           metric: str = "metric") -> list[str | None]:
    """Per-item reason why an item cannot be scored (non-finite samples, too short), else None."""
    reasons: list[str | None] = [None] * preds.shape[0]
    n = preds.shape[-1]
    if n < min_samples:
        return [f"{metric}: clip too short ({n} samples, needs at least {min_samples})"] * preds.shape[0]
    ok_p, ok_t = finite_rows(preds).tolist(), finite_rows(target).tolist()
    for i in range(preds.shape[0]):
        if not ok_t[i]:
            reasons[i] = f"{metric}: target contains NaN/Inf samples"
        elif not ok_p[i]:
            reasons[i] = f"{metric}: preds contains NaN/Inf samples"
    return reasons


def merge(values: torch.Tensor | Sequence[float], reasons: Sequence[str | None],
          extras: Sequence[dict[str, Any]] | None = None) -> list[MetricValue]:
    """Combine computed per-item values with per-item failure reasons."""
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().tolist()
    out: list[MetricValue] = []
    for i, (v, r) in enumerate(zip(values, reasons)):
        extra = dict(extras[i]) if extras else {}
        out.append(failed(r, **extra) if r else MetricValue(float(v), None, extra))
    return out


def zero_bad_rows(x: torch.Tensor, reasons: Sequence[str | None]) -> torch.Tensor:
    """Replace rows that already failed with zeros so that batched maths stays finite."""
    bad = [i for i, r in enumerate(reasons) if r]
    if not bad:
        return x
    x = x.clone()
    x[bad] = 0
    return x


def score_screened(preds: torch.Tensor, target: torch.Tensor, *, min_samples: int, metric: str,
                   compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | Sequence[float]]) -> list[MetricValue]:
    """The shared shape of a spectral metric: screen the items, score the good ones, NaN + reason for the rest.

    Rows that cannot be scored are zeroed before ``compute`` (so they cannot poison a batched
    reduction) and replaced by their reason afterwards; ``compute`` runs without gradients.
    """
    reasons = screen(preds, target, min_samples=min_samples, metric=metric)
    if all(reasons):
        return merge([math.nan] * len(reasons), reasons)
    p, t = zero_bad_rows(preds, reasons), zero_bad_rows(target, reasons)
    with torch.no_grad():
        return merge(compute(p, t), reasons)
