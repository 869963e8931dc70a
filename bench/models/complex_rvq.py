"""Residual vector quantisation of complex latent frames, with EMA codebooks (EuleroDec).

Each time frame of the complex latent is one vector ``z`` in C^H. Quantisation compares it in its
real form ``[Re z, Im z]`` in R^{2H} (the Euclidean distance on C^H is exactly the one on R^{2H}),
so the codebooks hold real 2H vectors and the quantised output is turned back into complex64.

* ``num_quantizers`` stages (12 in the paper) of ``codebook_size`` entries (2048, 11 bits).
* Codebooks are updated by exponential moving averages of the assigned vectors (no codebook
  loss), optionally weighted per frame by its inverse energy (``weight_power``, see
  :meth:`ComplexResidualVQ._frame_weights`); the decay warms up linearly from ``decay_start``
  (0.98) to ``decay_end`` (0.999) over
  ``decay_warmup_steps`` training steps, so early codebooks move fast and later ones settle.
* The encoder is pulled towards its codes by a commitment loss ``beta * ||z - sg(q)||^2`` (beta 0.05)
  and gradients pass the quantiser by the straight-through estimator.
* Dead codes (unused for ``dead_after_steps`` training steps) restart from vectors drawn from a
  reservoir of recent residuals of that stage, so a small batch can still populate 2048 entries.
* :meth:`fit_kmeans` refits every stage by (weighted) k-means on a large pool of encoder
  latents: an EMA fed a few dozen frames per step cannot place 2048 entries well on a CPU budget.
* ``usage_counts`` accumulate code assignments between :meth:`reset_stats` calls, giving the
  per-stage usage fraction and perplexity ``exp(entropy)`` to log (a collapsed codebook has a
  perplexity far below its size).

At inference, exactly the first ``n_quantizers`` stages run; the number is an explicit argument.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _nearest(residual: torch.Tensor, cb: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest entry of ``cb``, squared distance to it) for every row of ``residual``, in chunks."""
    idx, dist = [], []
    half_sq = 0.5 * (cb * cb).sum(1)
    for i in range(0, residual.shape[0], chunk):
        r = residual[i : i + chunk]
        score = torch.addmm(half_sq, r, cb.t(), beta=-1)  # r.c - |c|^2 / 2: largest is nearest
        m = score.max(dim=1)
        idx.append(m.indices)
        dist.append(((r * r).sum(1) - 2 * m.values).clamp_min(0))
    return torch.cat(idx), torch.cat(dist)


def _lloyd(residual: torch.Tensor, w: torch.Tensor, k: int, iters: int, gen: torch.Generator,
           chunk: int) -> torch.Tensor:
    """A ``k``-entry codebook by ``iters`` weighted Lloyd iterations from ``k`` distinct random rows.

    Each centroid is the ``w``-weighted mean of its rows; an empty cluster is re-seeded at the rows
    worst served by their centroids.
    """
    n = residual.shape[0]
    cb = residual[torch.randperm(n, generator=gen)[:k].to(residual.device)].clone()
    for _ in range(iters):
        idx, dist = _nearest(residual, cb, chunk)
        counts = torch.bincount(idx, minlength=k).float()
        wsum = torch.zeros(k, device=residual.device).index_add_(0, idx, w[:, 0])
        sums = torch.zeros_like(cb).index_add_(0, idx, residual * w)
        cb = torch.where(counts[:, None] > 0, sums / wsum.clamp_min(1e-12)[:, None], cb)
        empty = (counts == 0).nonzero().squeeze(1)
        if empty.numel():  # re-seed at the worst-served frames
            worst = dist.topk(empty.numel()).indices
            cb[empty] = residual[worst]
    return cb


class ComplexResidualVQ(nn.Module):
    """RVQ over complex vectors ``[B, T, H]`` (complex64), EMA codebooks over their real 2H form."""

    # registered buffers (declared for the type checker; created in __init__)
    codebooks: torch.Tensor  # [nq, K, 2H]
    ema_cluster_size: torch.Tensor  # [nq, K]
    ema_embed_sum: torch.Tensor  # [nq, K, 2H]
    last_used_step: torch.Tensor  # [nq, K] long
    step: torch.Tensor  # [] long
    initialized: torch.Tensor  # [] bool
    usage_counts: torch.Tensor  # [nq, K], not saved
    restarts: torch.Tensor  # [nq] long, not saved
    reservoir: torch.Tensor  # [nq, N, 2H], not saved

    def __init__(self, dim_complex: int, num_quantizers: int = 12, codebook_size: int = 2048,
                 beta: float = 0.05, decay_start: float = 0.98, decay_end: float = 0.999,
                 decay_warmup_steps: int = 5000, dead_after_steps: int = 200,
                 reservoir_size: int = 4096, eps: float = 1e-5, weight_power: float = 0.0) -> None:
        super().__init__()
        self.dim_complex, self.dim = dim_complex, 2 * dim_complex
        self.num_quantizers, self.codebook_size = num_quantizers, codebook_size
        self.beta, self.eps = beta, eps
        self.decay_start, self.decay_end, self.decay_warmup_steps = decay_start, decay_end, decay_warmup_steps
        self.dead_after_steps, self.reservoir_size = dead_after_steps, reservoir_size
        self.weight_power = float(weight_power)
        nq, k, d = num_quantizers, codebook_size, self.dim
        # persistent state (shipped): the codebooks; training state (saved for resume): EMA stats
        self.register_buffer("codebooks", torch.randn(nq, k, d) * 0.01)
        self.register_buffer("ema_cluster_size", torch.ones(nq, k))
        self.register_buffer("ema_embed_sum", self.codebooks.clone())
        self.register_buffer("last_used_step", torch.zeros(nq, k, dtype=torch.long))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        # not saved: statistics and the residual reservoir
        self.register_buffer("usage_counts", torch.zeros(nq, k), persistent=False)
        self.register_buffer("restarts", torch.zeros(nq, dtype=torch.long), persistent=False)
        self.register_buffer("reservoir", torch.zeros(nq, 0, d), persistent=False)

    # --- schedule and statistics ------------------------------------------------------------
    def current_decay(self) -> float:
        """EMA decay at the current training step (linear warm-up start -> end)."""
        frac = min(1.0, float(self.step) / max(1, self.decay_warmup_steps))
        return self.decay_start + (self.decay_end - self.decay_start) * frac

    def reset_stats(self) -> None:
        """Zero the usage and restart counters (kept per measurement window, not saved)."""
        self.usage_counts.zero_()
        self.restarts.zero_()

    def stats(self) -> dict[str, list[float]]:
        """Per-stage perplexity, fraction of codes used and restarts since the last reset."""
        counts = self.usage_counts
        total = counts.sum(dim=1, keepdim=True).clamp_min(1)
        p = counts / total
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)
        return {
            "perplexity": [round(float(x), 1) for x in entropy.exp()],
            "usage": [round(float(x), 4) for x in (counts > 0).float().mean(dim=1)],
            "restarts": [int(x) for x in self.restarts],
        }

    # --- core -------------------------------------------------------------------------------
    def _frame_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame weights ``(|z|^2 + floor)^(-weight_power / 2)``, mean 1 (all ones at power 0).

        With power 2 a codebook entry moves to the weighted mean of its frames so that the
        *relative* error counts: quiet frames are no longer all left to the one entry nearest zero
        (which starves them and collapses the perplexity); assignment stays plain nearest-entry.
        """
        if self.weight_power == 0:
            return torch.ones(x.shape[0], device=x.device)
        e = (x * x).sum(1)
        w = (e + 1e-3 * e.mean().clamp_min(1e-12)).pow(-self.weight_power / 2)
        return w / w.mean()

    def _nearest(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        cb = self.codebooks[stage]
        dist = (x * x).sum(1, keepdim=True) - 2 * x @ cb.t() + (cb * cb).sum(1).unsqueeze(0)
        return dist.argmin(dim=1)

    def _check_n(self, n_quantizers: int | None) -> int:
        n = self.num_quantizers if n_quantizers is None else int(n_quantizers)
        if not 1 <= n <= self.num_quantizers:
            raise ValueError(f"n_quantizers must be in 1..{self.num_quantizers}, got {n}")
        return n

    def _to_real(self, z: torch.Tensor) -> torch.Tensor:
        if not torch.is_complex(z) or z.dim() != 3 or z.shape[-1] != self.dim_complex:
            raise ValueError(f"expected complex [B, T, {self.dim_complex}], got {tuple(z.shape)} {z.dtype}")
        return torch.view_as_real(z).reshape(z.shape[0], z.shape[1], self.dim)  # [Re, Im] interleaved

    def _to_complex(self, x: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(x.reshape(x.shape[0], x.shape[1], self.dim_complex, 2).contiguous())

    @torch.no_grad()
    def _init_from(self, residual: torch.Tensor, stage: int) -> None:
        """First batch: distinct batch vectors seed as many codes as there are vectors; the other
        codes start out dead, so they restart from the (growing) reservoir of distinct residuals
        instead of crowding around copies of the same few vectors."""
        k, n = self.codebook_size, residual.shape[0]
        idx = torch.randperm(n, device=residual.device)[:k]
        if n < k:
            idx = torch.cat([idx, torch.randint(0, n, (k - n,), device=residual.device)])
        noise = residual.std() * 0.01 * torch.randn(k, self.dim, device=residual.device)
        self.codebooks[stage] = residual[idx] + noise
        self.ema_embed_sum[stage] = self.codebooks[stage].clone()
        self.ema_cluster_size[stage] = 1.0
        self.last_used_step[stage] = 0
        if n < k:
            self.last_used_step[stage, n:] = -(self.dead_after_steps + 1)

    @torch.no_grad()
    def _update_reservoir(self, residuals: list[torch.Tensor]) -> None:
        new = torch.stack(residuals)  # [nq, N, d]
        res = torch.cat([new, self.reservoir], dim=1) if self.reservoir.numel() else new
        self.reservoir = res[:, : self.reservoir_size].contiguous()

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, codes: torch.Tensor, stage: int, decay: float,
                    w: torch.Tensor) -> None:
        k = self.codebook_size
        counts = torch.bincount(codes, minlength=k).float()
        wsum = torch.zeros(k, device=x.device).index_add_(0, codes, w)
        sums = torch.zeros(k, self.dim, device=x.device).index_add_(0, codes, x * w[:, None])
        self.ema_cluster_size[stage].mul_(decay).add_(wsum, alpha=1 - decay)
        self.ema_embed_sum[stage].mul_(decay).add_(sums, alpha=1 - decay)
        size = self.ema_cluster_size[stage]
        n = size.sum()
        smoothed = (size + self.eps) / (n + k * self.eps) * n  # Laplace smoothing, never zero
        self.codebooks[stage] = self.ema_embed_sum[stage] / smoothed.unsqueeze(1)
        self.usage_counts[stage] += counts
        self.last_used_step[stage][counts > 0] = self.step

    @torch.no_grad()
    def _restart_dead(self, stage: int) -> None:
        """Re-seed codes unused for ``dead_after_steps`` steps with distinct recent residuals.

        At most one code per reservoir vector per step, so restarted codes never start as copies
        of one another (copies split one cluster and all but one die again).
        """
        dead_idx = ((self.step - self.last_used_step[stage]) > self.dead_after_steps).nonzero().squeeze(1)
        if dead_idx.numel() == 0 or self.reservoir.numel() == 0:
            return
        pool = self.reservoir[stage]
        n = min(dead_idx.numel(), pool.shape[0])
        codes = dead_idx[torch.randperm(dead_idx.numel(), device=pool.device)[:n]]
        fresh = pool[torch.randperm(pool.shape[0], device=pool.device)[:n]]
        fresh = fresh + pool.std() * 0.01 * torch.randn(n, self.dim, device=pool.device)
        self.codebooks[stage][codes] = fresh
        mean_size = float(self.ema_cluster_size[stage].mean())
        self.ema_cluster_size[stage][codes] = mean_size
        self.ema_embed_sum[stage][codes] = fresh * mean_size
        self.last_used_step[stage][codes] = self.step
        self.restarts[stage] += n

    @torch.no_grad()
    def fit_kmeans(self, z: torch.Tensor, iters: int = 5, frames_per_step: float | None = None,
                   seed: int = 0, chunk: int = 16384, weight_by: str = "frame") -> dict[str, list[float]]:
        """Refit every stage's codebook by k-means on latent frames ``z`` [N, H] complex.

        Stage by stage on the residuals the previous stages leave, like the RVQ itself: Lloyd
        iterations from ``codebook_size`` distinct frames (each centroid the weighted mean of its
        frames, see ``weight_power``), an empty cluster re-seeded at the frame worst served by its
        centroid (so no entry is wasted). The EMA statistics are set to what
        ``frames_per_step`` frames per training step would have accumulated, so training resumes
        smoothly from the fitted codebooks. Returns the per-stage perplexity of the assignment on
        ``z`` and the relative quantisation error left after each stage. ``weight_by="residual"``
        weights each stage by the energy of the residual it quantises instead of the frame's.
        """
        x = torch.view_as_real(z.reshape(-1, self.dim_complex)).reshape(-1, self.dim).float()
        x = x.to(self.codebooks.device)
        n, k = x.shape[0], self.codebook_size
        if n < k:
            raise ValueError(f"k-means needs at least {k} frames (one per codebook entry), got {n}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        residual = x.clone()
        energy = float((x * x).sum())
        w = self._frame_weights(x)[:, None]
        perplexities, rel_errors = [], []
        if weight_by not in ("frame", "residual"):
            raise ValueError(f"weight_by must be 'frame' or 'residual', got {weight_by!r}")
        for stage in range(self.num_quantizers):
            if weight_by == "residual" and stage > 0:
                w = self._frame_weights(residual)[:, None]
            cb = _lloyd(residual, w, k, iters, gen, chunk)
            idx, _ = _nearest(residual, cb, chunk)
            counts = torch.bincount(idx, minlength=k).float()
            p = counts / n
            perplexities.append(round(float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())), 1))
            scale = (frames_per_step / n) if frames_per_step else 1.0
            self._set_fitted_stage(stage, cb, idx, w, scale)
            residual = residual - cb[idx]
            rel_errors.append(round(float((residual * residual).sum()) / max(energy, 1e-12), 5))
        self.initialized.fill_(True)
        self.reservoir = torch.zeros(self.num_quantizers, 0, self.dim, device=x.device)
        return {"perplexity": perplexities, "relative_error": rel_errors}

    @torch.no_grad()
    def _set_fitted_stage(self, stage: int, cb: torch.Tensor, idx: torch.Tensor, w: torch.Tensor,
                          scale: float) -> None:
        """Install a k-means codebook and EMA statistics worth ``scale`` x its assignment weights."""
        self.codebooks[stage] = cb
        wsum = torch.zeros(self.codebook_size, device=cb.device).index_add_(0, idx, w[:, 0])
        self.ema_cluster_size[stage] = wsum * scale + self.eps
        self.ema_embed_sum[stage] = cb * self.ema_cluster_size[stage][:, None]
        self.last_used_step[stage] = self.step

    def forward(self, z: torch.Tensor, n_quantizers: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise ``z`` [B, T, H] complex. Returns (z_q complex, codes [B, n, T] long, commitment loss).

        In training mode all stages run and the EMA codebooks, dead-code restarts and statistics
        update; in eval mode exactly ``n_quantizers`` stages run and nothing changes.
        """
        n = self._check_n(n_quantizers)
        if self.training and n != self.num_quantizers:
            raise ValueError("training runs every quantizer stage; n_quantizers is an inference option")
        b, t, _ = z.shape
        x = self._to_real(z).reshape(b * t, self.dim)
        xd = x.detach().float()
        residual = xd.clone()
        quantized = torch.zeros_like(xd)
        codes = []
        residuals_seen = []
        decay = self.current_decay()
        weights = self._frame_weights(xd) if self.training else None
        for stage in range(n):
            if self.training:
                if not bool(self.initialized):
                    self._init_from(residual, stage)
                residuals_seen.append(residual[torch.randperm(residual.shape[0])[: self.reservoir_size]])
            idx = self._nearest(residual, stage)
            if weights is not None:  # training
                self._ema_update(residual, idx, stage, decay, weights)
            q = self.codebooks[stage][idx]
            quantized = quantized + q
            residual = residual - q
            codes.append(idx)
        if self.training:
            with torch.no_grad():
                m = min(r.shape[0] for r in residuals_seen)
                self._update_reservoir([r[:m] for r in residuals_seen])
                for stage in range(n):
                    self._restart_dead(stage)
                self.initialized.fill_(True)
                self.step += 1
        commit = self.beta * F.mse_loss(x.float(), quantized)
        x_q = x + (quantized.to(x.dtype) - x).detach()  # straight-through
        codes_t = torch.stack(codes, dim=0).view(n, b, t).permute(1, 0, 2).contiguous()
        return self._to_complex(x_q.view(b, t, self.dim)), codes_t, commit

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, n, T] (n <= num_quantizers) -> complex latent [B, T, H] (sum of the first n stages)."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, n, T], got {tuple(codes.shape)}")
        b, n, t = codes.shape
        self._check_n(n)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes out of range 0..{self.codebook_size - 1}")
        out = torch.zeros(b, t, self.dim, device=self.codebooks.device)
        for stage in range(n):
            out = out + self.codebooks[stage][codes[:, stage]]
        return self._to_complex(out)

    @property
    def bits_per_code(self) -> int:
        """Bits one code index takes in the bitstream: ceil(log2 K)."""
        return int(math.ceil(math.log2(self.codebook_size)))
