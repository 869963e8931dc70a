"""Residual vector quantisation as in Improved RVQGAN (DAC): factorised, L2-normalised codes.

Each stage projects the residual to a low-dimensional lookup space (``codebook_dim``, 8 in DAC),
finds the nearest codeword by cosine similarity (both sides L2-normalised), and projects the
chosen codeword back. Gradients pass the quantiser by the straight-through estimator; the
codebook and commitment losses are returned per item so callers can weight them.

The number of codebooks is an explicit, required argument of every call. In training mode,
quantizer dropout draws, for a fraction of the batch, a random count in ``1..n_codebooks``; the
other items use ``n_codebooks``. In eval mode exactly the first ``n_codebooks`` stages run and the
result has exactly ``n_codebooks`` code rows. (The released DAC code ignores the requested count in
training mode; here the request is an upper bound in both modes.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import WNConv1d


@dataclass
class QuantizerOutput:
    """What the RVQ returns. ``codes`` is ``[B, n, T]`` (int64); losses are ``[B]`` means."""

    z_q: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    n_active: torch.Tensor  # [B] codebooks used by each item


class FactorisedVQ(nn.Module):
    """One RVQ stage: in-projection to ``codebook_dim``, cosine-nearest codeword, out-projection."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.in_proj = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, latents: torch.Tensor) -> torch.Tensor:
        """Indices ``[B, T]`` of the codewords nearest (in cosine distance) to ``latents [B, D, T]``."""
        b, d, t = latents.shape
        enc = F.normalize(latents.transpose(1, 2).reshape(b * t, d), dim=1)
        book = F.normalize(self.codebook.weight, dim=1)
        # for unit vectors, argmin of squared distance = argmax of the dot product
        indices = (enc @ book.t()).argmax(dim=1)
        return indices.view(b, t)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codewords ``[B, codebook_dim, T]`` for ``indices [B, T]`` (before the out-projection)."""
        return self.codebook(indices).transpose(1, 2)

    def forward(self, residual: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise one residual ``[B, D, T]`` (``D = input_dim``).

        Returns ``(z_q [B, D, T]`` out-projected with straight-through gradients, ``indices [B, T]``,
        ``z_e [B, codebook_dim, T]`` the in-projected latent, ``commitment [B]``, ``codebook [B]``).
        """
        z_e = self.in_proj(residual)
        indices = self.nearest(z_e)
        z_q = self.lookup(indices)
        commitment = F.mse_loss(z_e, z_q.detach(), reduction="none").mean(dim=(1, 2))
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").mean(dim=(1, 2))
        z_q = z_e + (z_q - z_e).detach()  # straight-through
        return self.out_proj(z_q), indices, z_e, commitment, codebook

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """This stage's contribution ``[B, input_dim, T]`` to the latent, from ``indices [B, T]``."""
        return self.out_proj(self.lookup(indices))


class ResidualVQ(nn.Module):
    """``n_codebooks`` factorised VQ stages applied to successive residuals."""

    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int = 8,
                 quantizer_dropout: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {quantizer_dropout}")
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.quantizer_dropout = quantizer_dropout
        self.quantizers = nn.ModuleList(
            FactorisedVQ(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks)
        )

    def stages(self, n_codebooks: int) -> list[FactorisedVQ]:
        """The first ``n_codebooks`` stages, typed (``nn.ModuleList`` yields plain modules)."""
        return [cast(FactorisedVQ, q) for q in self.quantizers[:n_codebooks]]

    def _check_n(self, n_codebooks: int) -> int:
        if isinstance(n_codebooks, bool) or not isinstance(n_codebooks, int):
            raise TypeError(f"n_codebooks must be an int, got {n_codebooks!r}")
        if not 1 <= n_codebooks <= self.n_codebooks:
            raise ValueError(f"n_codebooks must be in 1..{self.n_codebooks}, got {n_codebooks}")
        return n_codebooks

    def _counts(self, batch: int, n_codebooks: int, device: torch.device) -> torch.Tensor:
        """Codebooks per item: ``n_codebooks``, or in training a random 1..n for the dropout share."""
        counts = torch.full((batch,), n_codebooks, device=device, dtype=torch.long)
        if self.training and self.quantizer_dropout > 0:
            n_drop = int(batch * self.quantizer_dropout)
            if n_drop:
                counts[:n_drop] = torch.randint(1, n_codebooks + 1, (n_drop,), device=device)
        return counts

    def forward(self, z: torch.Tensor, n_codebooks: int) -> QuantizerOutput:
        """Quantise ``z [B, D, T]`` with (at most, in training) the first ``n_codebooks`` stages."""
        n = self._check_n(n_codebooks)
        counts = self._counts(z.shape[0], n, z.device)
        residual = z
        z_q = torch.zeros_like(z)
        codes, latents = [], []
        commitment = z.new_zeros(z.shape[0])
        codebook = z.new_zeros(z.shape[0])
        for i, quantizer in enumerate(self.stages(n)):
            zq_i, idx_i, ze_i, commit_i, book_i = quantizer(residual)
            mask = (counts > i).to(z.dtype)
            z_q = z_q + zq_i * mask[:, None, None]
            residual = residual - zq_i
            commitment = commitment + commit_i * mask
            codebook = codebook + book_i * mask
            codes.append(idx_i)
            latents.append(ze_i)
        return QuantizerOutput(
            z_q=z_q,
            codes=torch.stack(codes, dim=1),
            latents=torch.cat(latents, dim=1),
            commitment_loss=commitment,
            codebook_loss=codebook,
            n_active=counts,
        )

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, D, T]`` from codes ``[B, n, T]`` (the first n codebooks)."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, n, T], got {tuple(codes.shape)}")
        n = self._check_n(int(codes.shape[1]))
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes out of range 0..{self.codebook_size - 1}")
        stages = self.stages(n)
        z_q = stages[0].decode_indices(codes[:, 0])
        for i in range(1, n):
            z_q = z_q + stages[i].decode_indices(codes[:, i])
        return z_q
