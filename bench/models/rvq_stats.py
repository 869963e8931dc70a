"""Per-stage health figures of a factorised residual VQ (:class:`bench.models.rvq.ResidualVQ`).

For latents ``z [B, D, T]`` (several tensors may be given, say one per file) and stages ``k = 1..n``
with residuals ``r_0 = z``, ``r_k = r_{k-1} - out_proj_k(c_k)``, in-projected inputs
``e_k = in_proj_k(r_{k-1})`` and chosen codewords ``c_k``:

* ``perplexity`` ``exp(-sum_i p_i log p_i)`` of the code histogram ``p`` (plug-in estimate; it is
  biased low when there are not many more frames than codes), and ``usage_fraction``, the share of
  the ``K`` codes chosen at least once;
* ``energy_ratio`` ``||r_k||^2 / ||r_{k-1}||^2``: the share of its input's energy a stage leaves;
  below 1 the stage removes energy, at or above 1 it removes none (a dead stage) or adds error;
* ``lookup_error`` ``||e_k - c_k||^2 / ||e_k||^2``: the relative quantisation error inside the
  stage's own ``codebook_dim`` lookup space (the part a factorised stage can see);
* ``latent_error`` ``||z - sum_{j<=k} out_proj_j(c_j)||^2 / ||z||^2``: what is left of the latent
  after ``k`` stages (the running product of the energy ratios).

Energies are summed over all frames of all latents before dividing. Nothing here changes the
quantiser: the lookup is the eval-mode one even on a module in training mode.
Sources: the residual VQ of Zeghidour et al. 2021 (SoundStream) and Kumar et al. 2023 (DAC);
codebook perplexity as in van den Oord et al. 2017 / Dhariwal et al. 2020.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import torch

from bench.models.rvq import ResidualVQ, nearest_codewords


@dataclass(frozen=True)
class StageStats:
    """One stage's figures (see the module docstring for the definitions)."""

    stage: int
    perplexity: float
    usage_fraction: float
    energy_ratio: float
    lookup_error: float
    latent_error: float

    def to_dict(self, digits: int = 4) -> dict[str, float | int]:
        """The figures rounded for a card or a CSV row."""
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class _Sums:
    """Running totals of one stage over the latents."""

    counts: torch.Tensor
    residual_in: float = 0.0
    residual_out: float = 0.0
    lookup_in: float = 0.0
    lookup_err: float = 0.0


def _perplexity(counts: torch.Tensor) -> float:
    """``exp(entropy)`` of a code histogram (1 for an empty one)."""
    total = counts.sum()
    if total <= 0:
        return 1.0
    p = counts[counts > 0].double() / total
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def _accumulate(rvq: ResidualVQ, z: torch.Tensor, sums: list[_Sums]) -> float:
    """Add one latent's figures to ``sums``; returns the latent's energy."""
    residual = z.float()
    for stage, acc in zip(rvq.stages(len(sums)), sums):
        z_e = stage.in_proj(residual)
        idx = nearest_codewords(z_e, stage.codebook.weight, stage.lookup_metric)
        chosen = stage.lookup(idx)
        acc.counts += torch.bincount(idx.flatten(), minlength=stage.codebook_size).to(acc.counts)
        acc.lookup_in += float(z_e.pow(2).sum())
        acc.lookup_err += float((z_e - chosen).pow(2).sum())
        acc.residual_in += float(residual.pow(2).sum())
        residual = residual - stage.out_proj(chosen)
        acc.residual_out += float(residual.pow(2).sum())
    return float(z.float().pow(2).sum())


def stage_stats(rvq: ResidualVQ, latents: torch.Tensor | Iterable[torch.Tensor],
                n_codebooks: int | None = None) -> list[StageStats]:
    """Figures of the first ``n_codebooks`` stages (all when None) over ``latents`` (``[B, D, T]`` each)."""
    n = rvq.n_codebooks if n_codebooks is None else rvq._check_n(n_codebooks)
    items = [latents] if isinstance(latents, torch.Tensor) else list(latents)
    if not items:
        raise ValueError("stage_stats needs at least one latent tensor")
    device = items[0].device
    sums = [_Sums(torch.zeros(rvq.codebook_size, dtype=torch.float64, device=device)) for _ in range(n)]
    energy = sum(_accumulate(rvq, z, sums) for z in items)
    out = []
    for k, acc in enumerate(sums, start=1):
        out.append(StageStats(
            stage=k,
            perplexity=_perplexity(acc.counts),
            usage_fraction=float((acc.counts > 0).double().mean()),
            energy_ratio=acc.residual_out / max(acc.residual_in, 1e-30),
            lookup_error=acc.lookup_err / max(acc.lookup_in, 1e-30),
            latent_error=acc.residual_out / max(energy, 1e-30),
        ))
    return out


def dead_stages(stats: list[StageStats], min_removed: float = 0.02) -> list[int]:
    """Stages that remove less than ``min_removed`` of their input's energy (``energy_ratio > 1 - min_removed``)."""
    return [s.stage for s in stats if s.energy_ratio > 1.0 - min_removed]


def stats_card(stats: list[StageStats], frames: int, what: str) -> dict[str, Any]:
    """The figures as a card section: one list per figure (index = stage - 1), the frame count and the source."""
    rows = [s.to_dict() for s in stats]
    keys = [k for k in rows[0] if k != "stage"] if rows else []
    return {"latents": what, "frames": frames, **{k: [r[k] for r in rows] for k in keys},
            "dead_stages": dead_stages(stats)}
