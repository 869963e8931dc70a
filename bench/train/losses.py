"""Losses of the DAC recipe: least-squares GAN, feature matching, and the weighted generator total.

The mel term is the shared ``MultiScaleMelDistance`` (7 scales, the same definition as the
``mel_distance`` metric), so the training loss and the benchmark measure the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

FeatureMaps = list[list[torch.Tensor]]  # one list per sub-discriminator, logits last


@dataclass(frozen=True)
class LossWeights:
    """DAC ``conf/base.yml``: mel 15, feature matching 2, adversarial 1, codebook 1, commitment 0.25;
    plus ``residual`` 15 (not in DAC): the RVQ's residual alignment, ``sum_k ||r_k - out_proj_k(c_k)||^2 /
    ||r_k||^2`` per item, which trains only the out-projections (``bench.models.rvq``; 0: DAC's losses);
    and ``phase`` 0 by default (not in DAC): :func:`complex_stft_loss`, which alone of these sees the phase.
    With EMA codebooks (the default) the codebook term carries no gradient and its weight does nothing."""

    mel: float = 15.0
    feature: float = 2.0
    adversarial: float = 1.0
    codebook: float = 1.0
    commitment: float = 0.25
    residual: float = 15.0
    phase: float = 0.0  # not in DAC: :func:`complex_stft_loss` (0: off, DAC's losses)

    def to_dict(self) -> dict:
        """The weights by term, for cards."""
        return asdict(self)


def complex_stft_loss(fake: torch.Tensor, real: torch.Tensor, *, n_fft: int = 512, hop: int = 128,
                      power: float = 0.3) -> torch.Tensor:
    """Mean L1 distance between the magnitude-compressed complex STFTs ``|S|^power e^{i angle S}`` of
    ``fake`` and ``real [B, 1, T]`` (Hann window): a magnitude *and* phase error, so unlike the mel and
    adversarial terms it rewards a waveform aligned with the input (what SI-SDR measures). EuleroDec's
    ``spec`` term in form; 0 for identical signals, large for a sign-flipped one."""
    window = torch.hann_window(n_fft, device=real.device, dtype=real.dtype)

    def compressed(x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=window, return_complex=True)
        return torch.view_as_real(spec * (spec.abs() + 1e-7).pow(power - 1.0))

    return (compressed(fake) - compressed(real)).abs().mean()


def discriminator_loss(d_fake: FeatureMaps, d_real: FeatureMaps) -> torch.Tensor:
    """LSGAN: sum over sub-discriminators of mean(D(fake)^2) + mean((1 - D(real))^2)."""
    loss = d_fake[0][-1].new_zeros(())
    for fake, real in zip(d_fake, d_real):
        loss = loss + fake[-1].pow(2).mean() + (1 - real[-1]).pow(2).mean()
    return loss


def generator_adversarial_loss(d_fake: FeatureMaps) -> torch.Tensor:
    """LSGAN generator term: sum over sub-discriminators of mean((1 - D(fake))^2)."""
    loss = d_fake[0][-1].new_zeros(())
    for fake in d_fake:
        loss = loss + (1 - fake[-1]).pow(2).mean()
    return loss


def feature_matching_loss(d_fake: FeatureMaps, d_real: FeatureMaps) -> torch.Tensor:
    """L1 between the feature maps (all but the logits) of fake and real, summed over layers."""
    loss = d_fake[0][-1].new_zeros(())
    for fake, real in zip(d_fake, d_real):
        for f, r in zip(fake[:-1], real[:-1]):
            loss = loss + F.l1_loss(f, r.detach())
    return loss


def weighted_total(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """Sum of the named terms that have a weight (missing terms count zero)."""
    total = None
    for name, w in asdict(weights).items():
        if name in terms and w:
            part = w * terms[name]
            total = part if total is None else total + part
    if total is None:
        raise ValueError(f"no weighted loss terms among {sorted(terms)}")
    return total
