"""DAC's discriminators: multi-period (MPD) and multi-band multi-scale complex STFT (MRD).

Every sub-discriminator returns its list of feature maps, the last one being the logits, so the
losses can use the feature maps for feature matching and the last map for the adversarial term.
``channels`` scales the width for small configs; the defaults are the published ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import WNConv2d

DEFAULT_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Published DAC values by default: periods 2,3,5,7,11 and STFT windows 2048,1024,512."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    fft_sizes: tuple[int, ...] = (2048, 1024, 512)
    mrd_channels: int = 32
    bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS

    def to_dict(self) -> dict:
        """JSON-ready form (tuples as lists), for cards and training states."""
        return {k: [list(b) for b in v] if k == "bands" else list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DiscriminatorConfig":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for key in ("periods", "mpd_channels", "fft_sizes"):
            if key in d:
                d[key] = tuple(int(v) for v in d[key])
        if "bands" in d:
            d["bands"] = tuple((float(a), float(b)) for a, b in d["bands"])
        return cls(**d)


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``[T/p, p]`` and applies 2-D convs along time (HiFi-GAN MPD)."""

    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        convs = []
        c_in = 1
        for i, c_out in enumerate(channels):
            stride = (1, 1) if i == len(channels) - 1 else (3, 1)
            convs.append(WNConv2d(c_in, c_out, (5, 1), stride, padding=(2, 0)))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.post = WNConv2d(c_in, 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of ``x [B, 1, T]`` folded by the period; the last one is the logits."""
        t = x.shape[-1]
        x = F.pad(x, (0, (-t) % self.period), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmaps.append(x)
        fmaps.append(self.post(x))
        return fmaps


class BandSTFTDiscriminator(nn.Module):
    """Complex STFT (real/imag as 2 channels) at one window size, split into frequency bands.

    Each band has its own conv stack (strided along frequency); the band outputs are joined along
    frequency before the final conv, as in DAC's MRD.
    """

    window: torch.Tensor  # a registered buffer (the Hann window), typed for the checker

    def __init__(self, n_fft: int, channels: int, bands: tuple[tuple[float, float], ...]) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 4
        n_bins = n_fft // 2 + 1
        self.band_bins = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        ch = channels

        def stack() -> nn.ModuleList:
            return nn.ModuleList([
                WNConv2d(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                WNConv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
            ])

        self.band_convs = nn.ModuleList(stack() for _ in self.band_bins)
        self.post = WNConv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` -> ``[B, 2, frames, bins]`` (real and imaginary parts)."""
        spec = torch.stft(x.squeeze(1), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True)
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every band's conv stack, then the logits over the joined bands."""
        spec = self.spectrogram(x)
        fmaps, outs = [], []
        for (lo, hi), convs in zip(self.band_bins, self.band_convs):
            h = spec[..., lo:hi]
            for conv in cast(nn.ModuleList, convs):  # a ModuleList of ModuleLists
                h = F.leaky_relu(conv(h), 0.1)
                fmaps.append(h)
            outs.append(h)
        fmaps.append(self.post(torch.cat(outs, dim=-1)))
        return fmaps


class Discriminator(nn.Module):
    """All sub-discriminators; ``forward`` returns one feature-map list per sub-discriminator."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        subs: list[nn.Module] = [PeriodDiscriminator(p, self.config.mpd_channels) for p in self.config.periods]
        subs += [BandSTFTDiscriminator(n, self.config.mrd_channels, self.config.bands) for n in self.config.fft_sizes]
        self.discriminators = nn.ModuleList(subs)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """Remove DC and peak-normalise to 0.8, as DAC does, so the judgement ignores level."""
        x = x - x.mean(dim=-1, keepdim=True)
        return 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """One feature-map list per sub-discriminator for ``x [B, 1, T]``."""
        x = self.preprocess(x)
        return [d(x) for d in self.discriminators]
