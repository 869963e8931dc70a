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

Why the released recipe left the residual stages dead on a short budget, and what is done here
(none of it in the released DAC code; each part can be switched off for the released behaviour:
``data_init=False, dead_code_frames=0, ema_decay=None`` and a zero weight on ``residual_loss``):

* **Data initialisation.** The released code starts every codebook at ``N(0, 1)`` (codeword norm
  about sqrt(codebook_dim) = 2.8 for 8 dims) while a fresh encoder's latent is about 1e-2 per
  element, so stage 1 outputs vectors some 3500 x the latent's energy and every later stage quantises
  the earlier stages' known codewords instead of the signal. Here the first training call of a stage
  (:meth:`FactorisedVQ.forward`) sets it up from that batch: the in-projection reads the residual's
  ``codebook_dim`` principal directions, centred and whitened (unwhitened, the first direction
  dominates and a cosine lookup lines nearly every frame up on two codes); the codebook keeps random
  directions spread over the sphere, at the projected frames' RMS norm; and the out-projection is the
  least-squares map from the chosen codewords back to the residual, so the stage removes energy from
  step 1. (Seeding codewords with copies of the first frames, as SoundStream/EnCodec do, collapsed
  the codes here: a fresh encoder's frames are too alike; ``codebook_init = "frames"`` keeps that
  option.) A caller that runs the lookup itself (VRVQ) gets the codebook seeding in
  :meth:`FactorisedVQ.nearest`.
* **EMA codebooks** (``ema_decay``, 0.99 by default; None: the released codebook loss). Under Adam a
  codeword moves at most about ``lr`` per element and step, and only when chosen: the shipped
  2000-step ``dac_small`` still had the chi-8 norm spread of its initial draw (2.3-2.6) and later
  stages a lookup error near 1. Here each codeword follows the running mean of the frames assigned
  to it (van den Oord et al. 2017, appendix; SoundStream, EnCodec); the codebook loss is then a
  reported constant without gradient.
* **Dead-code restarts.** A codeword not chosen for ``dead_code_frames`` consecutive training frames
  (default 8 x codebook_size, 8 uses' worth at uniform use) moves onto a frame of the current
  batch drawn with probability proportional to its quantisation error (as k-means++ seeds); codes
  the first batch could not seed distinctly start out dead. SoundStream/EnCodec restart similarly.
* **Residual alignment** (:attr:`StageOutput.residual_loss`). A factorised stage removes
  ``out_proj(c)`` from its residual ``r``, but nothing in the released losses asks ``out_proj(c)`` to
  resemble ``r``: the straight-through decoder gradient never sees the quantisation, and the codebook
  and commitment losses live in the lookup space. At random init ``out_proj(in_proj(r))`` is not a
  projection, so every stage *adds* energy (the shipped model: ``||r_k||^2 / ||r_k-1||^2`` of
  1.05-1.16 for stages 2..8) and the next stage's input is dominated by what the decoder already
  knows. The loss ``||sg(r) - out_proj(sg(c))||^2 / ||sg(r)||^2`` per item and stage (gradient to the
  out-projection only) fits each stage's out-projection as the regression of its residual on its
  codeword, which cannot leave more energy than it was given: a true residual quantiser in the
  latent space, so z_q(n) refines towards z as n grows.

Codebook upkeep acts only on modules in training mode and keeps no state in the checkpoint (the
counters and EMA statistics are non-persistent buffers; the format is unchanged): a loaded
checkpoint counts as initialised, so resuming, warm starts and published weights are never
re-seeded, and its EMA statistics restart from its codewords. Under ``torch.distributed`` counts
and sums are summed over processes and rank 0's codebook is broadcast after a restart, so the
replicas stay identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import WNConv1d

#: a code not chosen for this many training frames, in units of the codebook size, is restarted
DEAD_CODE_FRAMES_PER_CODE = 8
#: EMA decay of the codebooks by default (SoundStream, EnCodec: 0.99)
EMA_DECAY = 0.99


@dataclass
class QuantizerOutput:
    """What the RVQ returns. ``codes`` is ``[B, n, T]`` (int64); losses are ``[B]`` sums over the stages.

    ``commitment_loss`` and ``codebook_loss`` count the stages each item used (quantizer dropout);
    ``residual_loss`` counts every stage that ran (it trains the quantiser, whatever an item's rate).
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    n_active: torch.Tensor  # [B] codebooks used by each item
    residual_loss: torch.Tensor


@dataclass
class StageOutput:
    """One stage's result: ``z_q [B, D, T]`` (out-projected, straight-through), ``indices [B, T]``,
    ``z_e [B, codebook_dim, T]`` (the in-projected input) and ``[B]`` losses."""

    z_q: torch.Tensor
    indices: torch.Tensor
    z_e: torch.Tensor
    commitment: torch.Tensor
    codebook: torch.Tensor
    residual: torch.Tensor


def _world_size() -> int:
    """Processes in the ``torch.distributed`` group (1 when it is not initialised)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the processes in place (a no-op in one process)."""
    if _world_size() > 1:
        for t in tensors:
            torch.distributed.all_reduce(t)


def _sync_codebook(weight: torch.Tensor) -> None:
    """Make every process hold rank 0's copy of a codebook or projection tensor (a no-op in one process)."""
    if _world_size() > 1:
        torch.distributed.broadcast(weight, src=0)


#: how a stage finds its codeword: DAC's cosine similarity, or the Euclidean distance (SoundStream, EnCodec)
LOOKUPS = ("cosine", "euclidean")


def nearest_codewords(latents: torch.Tensor, codebook: torch.Tensor, lookup: str = "cosine") -> torch.Tensor:
    """Indices ``[B, T]`` of the rows of ``codebook [K, d]`` nearest to ``latents [B, d, T]``.

    ``cosine``: both sides L2-normalised (DAC), so a codeword is chosen by direction alone;
    ``euclidean``: the plain squared distance, so the chosen codeword's norm follows the input's.
    """
    b, d, t = latents.shape
    with torch.no_grad():  # an index: nothing to differentiate
        enc = latents.transpose(1, 2).reshape(b * t, d)
        if lookup == "cosine":
            # for unit vectors, argmin of squared distance = argmax of the dot product
            score = F.normalize(enc, dim=1) @ F.normalize(codebook, dim=1).t()
        elif lookup == "euclidean":
            # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2)
            score = torch.addmm(-0.5 * codebook.pow(2).sum(dim=1), enc, codebook.t())
        else:
            raise ValueError(f"lookup must be one of {LOOKUPS}, got {lookup!r}")
        indices = score.argmax(dim=1)
    return indices.view(b, t)


def residual_alignment(residual: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """``||r - removed||^2 / ||r||^2`` per item ``[B]`` (``r`` detached): 0 removes all, 1 removes nothing."""
    r = residual.detach()
    return (r - removed).pow(2).sum(dim=(1, 2)) / r.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)


class FactorisedVQ(nn.Module):
    """One RVQ stage: in-projection to ``codebook_dim``, nearest codeword (``lookup``), out-projection.

    In training mode :meth:`nearest` also keeps the codebook in use (data initialisation, EMA
    updates, dead-code restarts; see the module docstring). ``dead_code_frames`` 0 disables the
    restarts, None takes ``DEAD_CODE_FRAMES_PER_CODE x codebook_size``; ``ema_decay`` None trains the
    codebook by its loss (the released DAC); ``data_init`` False keeps the random start (released).
    The attribute ``codebook_init`` chooses the seeding: ``"spread"`` (default) or ``"frames"``.
    """

    initialised: torch.Tensor  # [] bool, not saved: loading weights sets it
    frames_unused: torch.Tensor  # [K] long, not saved: training frames since each code was last chosen
    restarts: torch.Tensor  # [] long, not saved: codes restarted since construction
    ema_size: torch.Tensor  # [K], not saved: EMA of the frames assigned per call (< 0: not started)
    ema_sum: torch.Tensor  # [K, d], not saved: EMA of their sum

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int, *, data_init: bool = True,
                 dead_code_frames: int | None = None, ema_decay: float | None = EMA_DECAY,
                 lookup: str = "cosine") -> None:
        super().__init__()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        if lookup not in LOOKUPS:
            raise ValueError(f"lookup must be one of {LOOKUPS}, got {lookup!r}")
        self.lookup_metric = lookup
        self.codebook_init = "spread"  # or "frames" (see _seed)
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.data_init = data_init
        self.dead_code_frames = (DEAD_CODE_FRAMES_PER_CODE * codebook_size if dead_code_frames is None
                                 else int(dead_code_frames))
        self.ema_decay = ema_decay
        self.in_proj = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        if ema_decay is not None:  # the EMA moves it; no optimiser step (nor weight decay) may
            self.codebook.weight.requires_grad_(False)
        self.register_buffer("initialised", torch.tensor(not data_init), persistent=False)
        self.register_buffer("frames_unused", torch.zeros(codebook_size, dtype=torch.long), persistent=False)
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("ema_size", torch.full((codebook_size,), -1.0), persistent=False)
        self.register_buffer("ema_sum", torch.zeros(codebook_size, codebook_dim), persistent=False)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        """Load as usual; loaded codebooks are trained ones, never to be re-seeded from data."""
        super()._load_from_state_dict(state_dict, prefix, *args)
        if f"{prefix}codebook.weight" in state_dict:
            self.initialised.fill_(True)
            self.frames_unused.zero_()
            self.ema_size.fill_(-1.0)  # the EMA restarts from these codewords at the next training call

    # --- codebook upkeep (training mode) -----------------------------------------------------------
    def nearest(self, latents: torch.Tensor) -> torch.Tensor:
        """Indices ``[B, T]`` of the codewords nearest (by the stage's ``lookup``) to ``latents [B, D, T]``.

        In training mode, first seeds an uninitialised codebook from ``latents``; afterwards moves the
        chosen codewords (EMA) and restarts the codes left dead. The indices are computed before any
        change, and a restarted code is never among them.
        """
        if self.training and not bool(self.initialised):
            self._seed(latents.detach())
        indices = nearest_codewords(latents, self.codebook.weight, self.lookup_metric)
        if self.training:
            self._upkeep(latents.detach(), indices)
        return indices

    @staticmethod
    def _frames(latents: torch.Tensor) -> torch.Tensor:
        """``[B, d, T]`` -> ``[B * T, d]`` float rows."""
        return latents.transpose(1, 2).reshape(-1, latents.shape[1]).float()

    @torch.no_grad()
    def _seed(self, latents: torch.Tensor) -> None:
        """Codebook at the scale of ``latents``: ``spread`` (default) keeps random directions spread over the
        sphere with the frames' RMS norm; ``frames`` copies distinct frames (codes beyond the frame count
        start out dead)."""
        frames = self._frames(latents)
        n, k = frames.shape[0], self.codebook_size
        weight = self.codebook.weight
        self.frames_unused.zero_()
        if self.codebook_init == "spread":
            norm = frames.pow(2).sum(dim=1).mean().sqrt()
            weight.copy_((F.normalize(torch.randn_like(weight, dtype=torch.float32), dim=1) * norm).to(weight.dtype))
        else:
            order = torch.randperm(n, device=frames.device)
            if n < k:
                order = torch.cat([order, torch.randint(0, n, (k - n,), device=frames.device)])
            weight.copy_(frames[order[:k]].to(weight.dtype))
            if n < k:  # duplicates: let the restarts give them frames of their own
                self.frames_unused[n:] = self.dead_code_frames + 1
        _sync_codebook(weight)
        self.ema_size.fill_(-1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _upkeep(self, latents: torch.Tensor, indices: torch.Tensor) -> None:
        """This call's EMA update and dead-code restarts (totals summed over processes)."""
        frames, idx = self._frames(latents), indices.flatten()
        counts = torch.bincount(idx, minlength=self.codebook_size).float()
        sums = torch.zeros(self.codebook_size, frames.shape[1], device=frames.device).index_add_(0, idx, frames)
        n_frames = torch.tensor(float(idx.numel()), device=frames.device)
        _all_sum(counts, sums, n_frames)
        if self.ema_decay is not None:
            self._ema_update(counts, sums, float(n_frames))
        if self.dead_code_frames > 0:
            self.frames_unused.add_(int(n_frames)).masked_fill_(counts > 0, 0)
            self._restart_dead(frames, idx)

    @torch.no_grad()
    def _ema_update(self, counts: torch.Tensor, sums: torch.Tensor, n_frames: float) -> None:
        """Move each codeword to the running mean of the frames assigned to it."""
        if bool(self.ema_size[0] < 0):  # fresh statistics: each codeword worth a uniform share of a call
            self.ema_size.fill_(n_frames / self.codebook_size)
            self.ema_sum.copy_(self.codebook.weight.float() * self.ema_size[:, None])
        d = cast(float, self.ema_decay)
        self.ema_size.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        live = self.ema_size > 1e-12
        weight = self.codebook.weight
        weight[live] = (self.ema_sum[live] / self.ema_size[live, None]).to(weight.dtype)

    @torch.no_grad()
    def _restart_dead(self, frames: torch.Tensor, idx: torch.Tensor) -> None:
        """Move codes unused for ``dead_code_frames`` frames onto frames drawn by their quantisation error."""
        dead = (self.frames_unused > self.dead_code_frames).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        weight = self.codebook.weight
        error = (frames - weight[idx].float()).pow(2).sum(dim=1) + 1e-12
        n = min(dead.numel(), frames.shape[0])
        codes = dead[torch.randperm(dead.numel(), device=dead.device)[:n]]
        weight[codes] = frames[torch.multinomial(error, n, replacement=False)].to(weight.dtype)
        _sync_codebook(weight)
        if self.ema_decay is not None and bool(self.ema_size[0] >= 0):
            self.ema_size[codes] = self.ema_size.mean()
            self.ema_sum[codes] = weight[codes].float() * self.ema_size[codes, None]
        self.frames_unused[codes] = 0
        self.restarts.add_(n)

    # --- coding ----------------------------------------------------------------------------------------
    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codewords ``[B, codebook_dim, T]`` for ``indices [B, T]`` (before the out-projection)."""
        return self.codebook(indices).transpose(1, 2)

    @torch.no_grad()
    def _init_projections(self, residual: torch.Tensor) -> None:
        """First training call: the stage as the best linear residual quantiser of this batch.

        The in-projection reads the residual's ``codebook_dim`` principal directions (centred and whitened), the
        codebook is seeded from the projected frames, and the out-projection is the least-squares map
        from the chosen codewords back to the residual, so the stage removes energy from step 1.
        """
        frames = self._frames(residual)  # [N, D]
        mean = frames.mean(dim=0)
        centred = frames - mean
        values, vectors = torch.linalg.eigh(centred.t() @ centred / max(1, frames.shape[0] - 1))
        top = values[-self.codebook_dim:].flip(0)
        top = top.clamp_min(1e-2 * float(top[0].clamp_min(1e-12)))  # a near-empty direction is boosted 10 x at most
        # whitened: every lookup direction equally loud, so cosine codes spread instead of lining up on PC 1
        basis = vectors[:, -self.codebook_dim:].flip(1) / top.sqrt()  # [D, d], largest variance first
        in_v = cast(torch.Tensor, self.in_proj.parametrizations.weight.original1)  # type: ignore[union-attr]
        in_g = cast(torch.Tensor, self.in_proj.parametrizations.weight.original0)  # type: ignore[union-attr]
        in_v.copy_(basis.t()[:, :, None].to(in_v))
        in_g.copy_(basis.t().norm(dim=1).view(-1, 1, 1).to(in_g))
        cast(torch.Tensor, self.in_proj.bias).copy_(-(basis.t() @ mean))
        z_e = self.in_proj(residual)
        self._seed(z_e)
        chosen = self._frames(self.lookup(nearest_codewords(z_e, self.codebook.weight, self.lookup_metric)))
        design = torch.cat([chosen, torch.ones_like(chosen[:, :1])], dim=1)  # [N, d + 1]
        solution = torch.linalg.lstsq(design, frames).solution  # [d + 1, D]
        out_v = cast(torch.Tensor, self.out_proj.parametrizations.weight.original1)  # type: ignore[union-attr]
        out_g = cast(torch.Tensor, self.out_proj.parametrizations.weight.original0)  # type: ignore[union-attr]
        weight = solution[:-1].t()[:, :, None]  # [D, d, 1]
        out_v.copy_(weight.to(out_v))
        out_g.copy_(weight.norm(dim=(1, 2), keepdim=True).to(out_g))
        cast(torch.Tensor, self.out_proj.bias).copy_(solution[-1])
        for t in (in_v, in_g, cast(torch.Tensor, self.in_proj.bias), out_v, out_g,
                  cast(torch.Tensor, self.out_proj.bias)):
            _sync_codebook(t)

    def forward(self, residual: torch.Tensor) -> StageOutput:
        """Quantise one residual ``[B, D, T]`` (``D = input_dim``); see :class:`StageOutput`.

        The first training call of a fresh stage initialises it from ``residual`` (:meth:`_init_projections`).
        """
        if self.training and not bool(self.initialised):
            self._init_projections(residual.detach())
        z_e = self.in_proj(residual)
        indices = self.nearest(z_e)
        z_c = self.lookup(indices)
        commitment = F.mse_loss(z_e, z_c.detach(), reduction="none").mean(dim=(1, 2))
        codebook = F.mse_loss(z_c, z_e.detach(), reduction="none").mean(dim=(1, 2))
        z_q = self.out_proj(z_e + (z_c - z_e).detach())  # straight-through
        # the out-projection alone learns to make its codeword remove the residual
        residual_loss = residual_alignment(residual, self.out_proj(z_c.detach()))
        return StageOutput(z_q, indices, z_e, commitment, codebook, residual_loss)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """This stage's contribution ``[B, input_dim, T]`` to the latent, from ``indices [B, T]``."""
        return self.out_proj(self.lookup(indices))


class ResidualVQ(nn.Module):
    """``n_codebooks`` factorised VQ stages applied to successive residuals (upkeep options: :class:`FactorisedVQ`)."""

    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int = 8,
                 quantizer_dropout: float = 0.5, *, data_init: bool = True, dead_code_frames: int | None = None,
                 ema_decay: float | None = EMA_DECAY, lookup: str = "cosine") -> None:
        super().__init__()
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {quantizer_dropout}")
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.quantizer_dropout = quantizer_dropout
        self.quantizers = nn.ModuleList(
            FactorisedVQ(input_dim, codebook_size, codebook_dim, data_init=data_init,
                         dead_code_frames=dead_code_frames, ema_decay=ema_decay, lookup=lookup)
            for _ in range(n_codebooks)
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
        commitment, codebook, aligned = z.new_zeros(z.shape[0]), z.new_zeros(z.shape[0]), z.new_zeros(z.shape[0])
        for i, quantizer in enumerate(self.stages(n)):
            out = quantizer(residual)
            mask = (counts > i).to(z.dtype)
            z_q = z_q + out.z_q * mask[:, None, None]
            residual = residual - out.z_q
            commitment = commitment + out.commitment * mask
            codebook = codebook + out.codebook * mask
            aligned = aligned + out.residual
            codes.append(out.indices)
            latents.append(out.z_e)
        return QuantizerOutput(
            z_q=z_q,
            codes=torch.stack(codes, dim=1),
            latents=torch.cat(latents, dim=1),
            commitment_loss=commitment,
            codebook_loss=codebook,
            n_active=counts,
            residual_loss=aligned,
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
