"""DAC's multi-scale mel distance, as a metric and as a differentiable training loss.

Definition (descript-audio-codec ``dac/nn/loss.py`` ``MelSpectrogramLoss`` @ c7cfc5d2 with
descriptinc/audiotools ``AudioSignal.stft``/``mel_spectrogram``; re-implemented here without librosa):

for each scale i (window length w_i, n_mels m_i):
  * STFT: ``torch.stft`` with n_fft = win = w_i, hop = w_i // 4, periodic Hann window
    (= ``scipy.signal.get_window("hann", w)``), ``center=True`` with reflect padding, no extra padding;
  * magnitude |X| (not power);
  * mel = B_i · |X| where B_i is the Slaney-scale mel filterbank with Slaney area normalisation
    (= ``librosa.filters.mel(sr, n_fft=w_i, n_mels=m_i, fmin, fmax, htk=False, norm="slaney")``),
    fmax = sr/2 when unset;
  * term_i = log_weight · mean|log10(max(mel_p, eps)^pow) - log10(max(mel_t, eps)^pow)|
             + mag_weight · mean|mel_p - mel_t|   (means over mel bins, frames and channels).

The distance is Σ_i term_i (summed, not averaged, over scales). Unitless (log10 of magnitude); lower is
better; 0 for identical signals.

Presets (:class:`MelDistanceConfig`):
  * ``MelDistanceConfig.dac()`` (the metric ``mel_distance``, DAC ``conf/base.yml``): windows
    32, 64, ..., 2048; n_mels 5, 10, ..., 320; fmin 0; fmax sr/2; pow 1; eps 1e-5; mag_weight 0; log_weight 1.
  * ``MelDistanceConfig.dac_class_defaults()`` (what DAC's ``scripts/evaluate.py`` gets without a config):
    windows 2048, 512; n_mels 150, 80; pow 2; mag_weight 1; log_weight 1; eps 1e-5.

Sample rate: the distance is computed at the rate of the signals it is given (the item's comparison rate),
as DAC does during training (its loss runs at the model's rate). Window lengths are in samples and fmax is
sr/2, so values at different rates are different measurements: compare codecs at the same rate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt
import torch

from bench.metrics._spectral import (
    check_pair,
    min_samples_for_stft,
    require_rate,
    score_screened,
    stft_blocks,
)
from bench.metrics.base import MetricSpec, MetricValue, register_metric

# ---------------------------------------------------------------------------------------------- mel scale
# Slaney (Auditory Toolbox) mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP_HZ = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP_HZ
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(freq_hz: npt.ArrayLike) -> np.ndarray:
    """Frequencies in Hz to Slaney mels (float64), librosa's ``hz_to_mel(htk=False)`` formula."""
    f = np.asarray(freq_hz, dtype=np.float64)
    mel = f / _F_SP_HZ
    log_region = f >= _MIN_LOG_HZ
    mel = np.where(log_region, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-300) / _MIN_LOG_HZ) / _LOGSTEP, mel)
    return mel


def mel_to_hz_slaney(mel: npt.ArrayLike) -> np.ndarray:
    """Slaney mels back to Hz (float64), the inverse of :func:`hz_to_mel_slaney`."""
    m = np.asarray(mel, dtype=np.float64)
    f = _F_SP_HZ * m
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), f)


@functools.lru_cache(maxsize=128)
def slaney_mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float = 0.0,
                          fmax_hz: float | None = None) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft//2+1]`` (float64), Slaney scale and area normalisation.

    Filter k spans mel points k, k+1, k+2 of ``n_mels + 2`` points equally spaced in mel between fmin and
    fmax; each triangle is scaled by 2 / (f_{k+2} - f_k) so that its area is constant (Slaney norm).
    """
    if fmax_hz is None:
        fmax_hz = sample_rate_hz / 2.0
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate_hz)
    mel_pts = np.linspace(hz_to_mel_slaney(fmin_hz), hz_to_mel_slaney(fmax_hz), n_mels + 2)
    hz_pts = mel_to_hz_slaney(mel_pts)
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights


_FILTERBANKS: dict[tuple, torch.Tensor] = {}


def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float | None,
                   device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """Cached torch copy of :func:`slaney_mel_filterbank` on ``device`` in ``dtype``."""
    key = (int(sample_rate_hz), int(n_fft), int(n_mels), float(fmin_hz), fmax_hz, str(device), dtype)
    fb = _FILTERBANKS.get(key)
    if fb is None:
        fb = torch.from_numpy(slaney_mel_filterbank(*key[:5])).to(device=device, dtype=dtype)
        _FILTERBANKS[key] = fb
    return fb


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MelDistanceConfig:
    """Parameters of a multi-scale mel distance (see the module docstring for the formula)."""

    window_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    hop_divisor: int = 4
    fmin_hz: tuple[float, ...] = field(default=(0.0,) * 7)
    fmax_hz: tuple[float | None, ...] = field(default=(None,) * 7)
    pow: float = 1.0
    clamp_eps: float = 1e-5
    mag_weight: float = 0.0
    log_weight: float = 1.0

    def __post_init__(self) -> None:
        n = len(self.window_lengths)
        if not (len(self.n_mels) == len(self.fmin_hz) == len(self.fmax_hz) == n):
            raise ValueError("window_lengths, n_mels, fmin_hz and fmax_hz need one entry per scale")

    @classmethod
    def dac(cls) -> "MelDistanceConfig":
        """DAC ``conf/base.yml`` 7-scale training config (the ``mel_distance`` metric)."""
        return cls()

    @classmethod
    def dac_class_defaults(cls) -> "MelDistanceConfig":
        """DAC ``MelSpectrogramLoss`` class defaults (2 scales, power-2 log, plus magnitude L1)."""
        return cls(window_lengths=(2048, 512), n_mels=(150, 80), fmin_hz=(0.0, 0.0), fmax_hz=(None, None),
                   pow=2.0, clamp_eps=1e-5, mag_weight=1.0, log_weight=1.0)

    @property
    def min_samples(self) -> int:
        """Shortest signal the largest window accepts (reflect padding needs more than half a window)."""
        return min_samples_for_stft(max(self.window_lengths))


PRESETS = {"dac": MelDistanceConfig.dac, "dac_class_defaults": MelDistanceConfig.dac_class_defaults}


def _flatten_channels(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    if x.ndim == 3:
        return x.reshape(-1, x.shape[-1]), x.shape[1]
    if x.ndim == 2:
        return x, 1
    if x.ndim == 1:
        return x.unsqueeze(0), 1
    raise ValueError(f"expected [B, T] or [B, C, T] audio, got shape {tuple(x.shape)}")


class MultiScaleMelDistance(torch.nn.Module):
    """Differentiable, batched multi-scale mel distance returning one value per item ``[B]``.

    Usage as a training loss: ``loss = MultiScaleMelDistance(sample_rate_hz=sr)(recon, audio).mean()``
    (DAC weights it by 15 in its generator loss). Inputs are ``[B, T]`` or ``[B, C, T]``; channels are
    averaged into the item's value. Filterbanks and windows are cached per device and dtype.
    """

    def __init__(self, config: MelDistanceConfig | None = None, sample_rate_hz: int | None = None) -> None:
        super().__init__()
        self.config = config or MelDistanceConfig.dac()
        self.sample_rate_hz = sample_rate_hz

    def extra_repr(self) -> str:
        """Rate and config shown in the module's ``repr`` (torch's hook for printing modules)."""
        return f"sample_rate_hz={self.sample_rate_hz}, config={self.config}"

    def per_scale(self, preds: torch.Tensor, target: torch.Tensor,
                  sample_rate_hz: int | None = None) -> torch.Tensor:
        """Per-scale terms ``[n_scales, B]`` (their sum over scales is the distance)."""
        sr = sample_rate_hz or self.sample_rate_hz
        if sr is None:
            raise ValueError("MultiScaleMelDistance needs sample_rate_hz (constructor or call)")
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in shape")
        p, channels = _flatten_channels(preds)
        t, _ = _flatten_channels(target.to(p.dtype))
        cfg = self.config
        if p.shape[-1] < cfg.min_samples:
            raise ValueError(f"signal of {p.shape[-1]} samples is shorter than the {cfg.min_samples} "
                             f"samples the {max(cfg.window_lengths)}-sample window needs")
        both = torch.cat([p, t], dim=0)
        n = p.shape[0]
        terms = []
        for w, m, fmin, fmax in zip(cfg.window_lengths, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz):
            fb = mel_filterbank(sr, w, m, fmin, fmax, both.device, both.dtype)
            log_sum = both.new_zeros(n)
            mag_sum = both.new_zeros(n)
            frames = 0
            for spec in stft_blocks(both, w, w // cfg.hop_divisor):
                mel = torch.matmul(fb, spec.abs())  # [2n, n_mels, frames]
                mp, mt = mel[:n], mel[n:]
                if cfg.log_weight:
                    lp = mp.clamp(min=cfg.clamp_eps).pow(cfg.pow).log10()
                    lt = mt.clamp(min=cfg.clamp_eps).pow(cfg.pow).log10()
                    log_sum = log_sum + (lp - lt).abs().sum(dim=(-2, -1))
                if cfg.mag_weight:
                    mag_sum = mag_sum + (mp - mt).abs().sum(dim=(-2, -1))
                frames += mel.shape[-1]
            count = frames * m
            term = cfg.log_weight * log_sum / count + cfg.mag_weight * mag_sum / count
            terms.append(term.reshape(-1, channels).mean(dim=-1))
        return torch.stack(terms)

    def forward(self, preds: torch.Tensor, target: torch.Tensor,
                sample_rate_hz: int | None = None) -> torch.Tensor:
        """Distance per item ``[B]``: the sum over scales of :meth:`per_scale`.

        Added scale by scale, elementwise: a reduction over the scale axis of a ``[n_scales, B]``
        tensor is ordered differently for B = 1 and B > 1, which changed the last bit of an item's
        value with the batch it shared.
        """
        terms = self.per_scale(preds, target, sample_rate_hz)
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total


def mel_distance(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = None,
                 items: Sequence[Any] | None = None, config: MelDistanceConfig | str = "dac",
                 dtype: torch.dtype = torch.float32, **options: Any) -> list[MetricValue]:
    """DAC multi-scale mel distance per item (7-scale ``dac`` preset unless ``config`` says otherwise).

    Computed in float32 by default, as DAC does (the reference values agree to ~1e-7 relative).
    NaN + reason for clips shorter than the largest window needs, or non-finite samples.
    """
    sr = require_rate(sample_rate_hz, "mel_distance")
    cfg = PRESETS[config]() if isinstance(config, str) else config
    p, t = check_pair(preds, target, dtype)
    return score_screened(p, t, min_samples=cfg.min_samples, metric="mel_distance",
                          compute=MultiScaleMelDistance(cfg, sr))


SPEC = register_metric(MetricSpec(
    name="mel_distance",
    fn=mel_distance,
    higher_is_better=False,
    unit="log10 mel",
    sample_rate_hz=None,
    valid_range=(0.0, math.inf),
    version="1",
    source="descript-audio-codec MelSpectrogramLoss with conf/base.yml (windows 32..2048, mels 5..320)",
    description="DAC 7-scale log-mel L1 distance at the item's comparison rate",
    min_duration_s=0.0,
    on_device=True,
))
