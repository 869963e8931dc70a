"""VRVQ: variable-bitrate residual VQ on the DAC backbone (Chae et al., "Variable Bitrate Residual
Vector Quantization for Audio Coding", Sony AI, ICASSP 2025; reference code sonyresearch/VRVQ).

What VRVQ adds to DAC (everything else is :class:`bench.models.dac_model.DAC`, reused as is):

* **Importance subnetwork**: on the encoder activation after its last strided block and before its
  final Snake + conv (``DAC.encoder.body``), Snake + weight-normalised conv (k=3) blocks narrowing the
  channels (1024 -> 1024 -> 512 -> 128 -> 32 -> 8 -> 1 at the paper's width, scaled by
  ``body_channels / 1024`` for smaller backbones), then a sigmoid: an importance ``p[t]`` in (0, 1)
  per frame.
* **Importance map to mask**: with ``S = level x N_q``, codebook ``k`` (0-based) is on in frame ``t``
  where ``S p[t] >= k``. Codebook 0 is therefore always on (``S p >= 0``) and the active codebooks are
  a prefix: ``count[t] = min(N_q, floor(S p[t]) + 1)``.
* **Gradient through the mask**: the forward pass uses that hard mask; the backward pass uses a
  smooth surrogate ``g(x)`` of the step ``H(x)`` at ``x = S p - k`` (straight-through estimator:
  ``mask = g(x) + (H(x) - g(x)).detach()``). The paper's surrogate, pinned to the official code
  (``models/utils.py: logcosh``), is

      g_alpha(x) = 1/2 + [log cosh(alpha (x + 1/2)) - log cosh(alpha (x - 1/2))] / (2 alpha),

  alpha = 2 by default, whose slope ``(tanh(alpha(x+1/2)) - tanh(alpha(x-1/2))) / 2`` is positive for
  every x. As alpha -> infinity it tends to the baseline "saturated identity" ``clamp(x + 1/2, 0, 1)``,
  kept here as ``surrogate="saturated"``: its slope is 1 on ``|x| < 1/2`` and 0 elsewhere, so a
  codebook whose threshold is more than half a step away gets no gradient at all.
* **Masked RVQ**: every stage of the (reused) factorised RVQ runs on the unmasked residual chain; the
  quantised latent is ``sum_k mask_k[t] * zq_k[t]`` and the codebook/commitment losses are masked per
  frame, as in the reference code.
* **Training recipe** (:meth:`VRVQ.forward` in training mode with neither ``n_codebooks`` nor
  ``level``): the level is drawn per item from U[level_min, level_max] = U[0.125, 6]; the last
  ``full_codebook_rate`` = 25% of the batch uses all codebooks; quantizer dropout is 0; the rate term
  is ``mean(p)`` over the importance-mapped items (weighted by lambda = 2 in ``bench.train.vrvq``).

Where this differs from the reference code, and why:

* the importance net's convolutions start variance-preserving (std 1/sqrt(fan_in)) instead of the
  reference's std 0.02, which only preserves scale at the paper's ~1000-channel width (see
  ``ImportanceNet``);
* for the narrow ``small``/``tiny`` backbones only, the importance net's input is divided by one
  running RMS scalar (``importance_input_norm``), because their encoder activation is small (RMS
  ~0.01 at init with the backbone's current init, ~3e-5 with DAC's std-0.02 init), where Snake is
  nearly the identity; the published-width configs keep the paper's unnormalised input;
* the log-cosh surrogate's slope is computed in an exact product form (the reference code's
  autograd of the same expression cancels to zero a few steps from each threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, cast, overload

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.dac_model import CONFIGS as DAC_CONFIGS
from bench.models.dac_model import DAC, DACConfig, GeneratorOutput
from bench.models.layers import Snake1d, WNConv1d, check_config_fields
from bench.models.rvq import residual_alignment

#: channel widths of the importance net at the paper's width (input 1024 channels), output 1 appended
PAPER_IMPORTANCE_WIDTHS = (1024, 512, 128, 32, 8)
PAPER_BODY_CHANNELS = 1024
SURROGATES = ("logcosh", "saturated")


@dataclass(frozen=True)
class VRVQConfig:
    """A DAC backbone plus what VRVQ adds. ``importance_widths`` empty = scaled from the paper's."""

    backbone: DACConfig
    importance_widths: tuple[int, ...] = ()
    surrogate: str = "logcosh"
    alpha: float = 2.0
    level_min: float = 0.125
    level_max: float = 6.0
    full_codebook_rate: float = 0.25
    importance_input_norm: bool = False

    def __post_init__(self) -> None:
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not 0 < self.level_min < self.level_max:
            raise ValueError(f"need 0 < level_min < level_max, got {self.level_min}, {self.level_max}")
        if not 0.0 <= self.full_codebook_rate <= 1.0:
            raise ValueError(f"full_codebook_rate must be in [0, 1], got {self.full_codebook_rate}")

    @property
    def n_codebooks(self) -> int:
        """``N_q``, the backbone's number of codebooks (the most a frame can use)."""
        return self.backbone.n_codebooks

    @property
    def body_channels(self) -> int:
        """Channels of the encoder activation the importance net reads (``Encoder.body_channels``)."""
        return self.backbone.encoder_dim * 2 ** len(self.backbone.encoder_rates)

    def resolved_importance_widths(self) -> tuple[int, ...]:
        """Hidden widths of the importance net (the final 1-channel output not included)."""
        if self.importance_widths:
            return tuple(int(w) for w in self.importance_widths)
        scale = self.body_channels / PAPER_BODY_CHANNELS
        return tuple(max(1, round(w * scale)) for w in PAPER_IMPORTANCE_WIDTHS)

    @property
    def count_bits(self) -> int:
        """Side information per frame: ceil(log2 N_q) bits carry the codebook count (1..N_q)."""
        return max(1, math.ceil(math.log2(self.n_codebooks))) if self.n_codebooks > 1 else 0

    def max_count(self, level: float) -> int:
        """Codebooks a frame can use at ``level`` (p < 1): min(N_q, floor(level N_q) + 1), at most."""
        return min(self.n_codebooks, math.floor(level * self.n_codebooks) + 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for a checkpoint card, with the importance widths resolved (so they are explicit)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["backbone"] = self.backbone.to_dict()
        d["importance_widths"] = list(self.resolved_importance_widths())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VRVQConfig":
        """Rebuild a config from a card's ``config`` entry; unknown fields or a missing backbone are errors."""
        check_config_fields(cls, d, "VRVQ config fields")
        d = dict(d)
        if "backbone" not in d:
            raise ValueError("VRVQ config needs a 'backbone' (DAC config) entry")
        d["backbone"] = DACConfig.from_dict(d["backbone"])
        if "importance_widths" in d:
            d["importance_widths"] = tuple(int(w) for w in d["importance_widths"])
        return cls(**d)


def _vrvq(name: str) -> VRVQConfig:
    # the published widths as in the paper; the narrow CPU configs normalise the importance input
    # (see ImportanceNet)
    return VRVQConfig(replace(DAC_CONFIGS[name], quantizer_dropout=0.0),
                      importance_input_norm=name in {"small", "tiny"})


#: VRVQ on each DAC backbone config, quantizer dropout 0 (the VRVQ recipe)
CONFIGS: dict[str, VRVQConfig] = {name: _vrvq(name) for name in DAC_CONFIGS}


def get_config(name: str) -> VRVQConfig:
    """The named config from :data:`CONFIGS` (one per DAC backbone); unknown names get a suggestion."""
    if name not in CONFIGS:
        from bench.registry import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown VRVQ config {name!r}.{did_you_mean(name, list(CONFIGS))}")
    return CONFIGS[name]


# ---- importance map -> mask ------------------------------------------------------------------------


def _log_cosh(y: torch.Tensor) -> torch.Tensor:
    """log(cosh(y)) without overflow: |y| + log1p(exp(-2|y|)) - log 2."""
    a = y.abs()
    return a + F.softplus(-2.0 * a) - math.log(2.0)


class _LogCoshStep(torch.autograd.Function):
    """The log-cosh step with its exact slope written in product form.

    Differentiating the log-cosh expression naively gives ``(tanh(a) - tanh(b)) / 2``, a difference of
    two numbers near 1 that cancels to 0 a few steps from the threshold (float32: |x| > ~4). The same
    slope as ``sinh(alpha) / (2 cosh(a) cosh(b))``, evaluated in log space, stays positive until it
    underflows (float32: |x| ~ 20, float64: |x| ~ 170).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:  # ctx: autograd's FunctionCtx
        """The step value at ``x`` (any shape); saves ``x`` and ``alpha`` for the backward pass."""
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return 0.5 + (_log_cosh(alpha * (x + 0.5)) - _log_cosh(alpha * (x - 0.5))) / (2.0 * alpha)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Gradient for ``x`` by the product-form slope; none for ``alpha`` (a constant)."""
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        log_slope = (math.log(math.sinh(a) / 2.0) - _log_cosh(a * (x + 0.5)) - _log_cosh(a * (x - 0.5)))
        return grad_out * torch.exp(log_slope), None


def logcosh_step(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """The paper's smooth step: 1/2 + [logcosh(alpha(x+1/2)) - logcosh(alpha(x-1/2))] / (2 alpha).

    Equal to the reference code's two-branch exp/log form (``models/utils.py: logcosh``); goes from 0
    (x -> -inf) through 1/2 (x = 0) to 1 (x -> +inf) with slope
    ``(tanh(alpha(x+1/2)) - tanh(alpha(x-1/2))) / 2 = sinh(alpha) / (2 cosh(alpha(x+1/2)) cosh(alpha(x-1/2)))``,
    positive everywhere (computed in that product form, see :class:`_LogCoshStep`).
    """
    return _LogCoshStep.apply(x, float(alpha))


def saturated_step(x: torch.Tensor) -> torch.Tensor:
    """Baseline surrogate: the saturated identity clamp(x + 1/2, 0, 1) (the alpha -> inf limit)."""
    return torch.clamp(x + 0.5, 0.0, 1.0)


def surrogate_step(x: torch.Tensor, surrogate: str = "logcosh", alpha: float = 2.0) -> torch.Tensor:
    """The named smooth step (``logcosh`` or ``saturated``) applied elementwise to ``x``."""
    if surrogate == "logcosh":
        return logcosh_step(x, alpha)
    if surrogate == "saturated":
        return saturated_step(x)
    raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")


def importance_to_mask(scaled: torch.Tensor, n_codebooks: int, surrogate: str = "logcosh",
                       alpha: float = 2.0) -> torch.Tensor:
    """Mask ``[B, N_q, T]`` from the scaled importance ``S p`` ``[B, T]``: codebook k on where S p >= k.

    Forward: the hard 0/1 prefix mask. Backward: the gradient of the surrogate (straight-through).
    """
    if scaled.dim() != 2:
        raise ValueError(f"scaled importance must be [B, T], got {tuple(scaled.shape)}")
    k = torch.arange(n_codebooks, device=scaled.device, dtype=scaled.dtype)
    x = scaled[:, None, :] - k[None, :, None]
    hard = (x >= 0).to(scaled.dtype)
    soft = surrogate_step(x, surrogate, alpha)
    return soft + (hard - soft).detach()


def counts_from_importance(p: torch.Tensor, level: float | torch.Tensor, n_codebooks: int) -> torch.Tensor:
    """Codebooks per frame ``[B, T]`` (int64) at ``level``: min(N_q, floor(level N_q p) + 1)."""
    scaled = p * _level_tensor(level, p) * n_codebooks
    return (torch.floor(scaled).clamp(min=0, max=n_codebooks - 1) + 1).long()


def prefix_mask(counts: torch.Tensor, n_codebooks: int) -> torch.Tensor:
    """``[B, N_q, T]`` float mask with the first ``counts[b, t]`` codebooks on."""
    k = torch.arange(n_codebooks, device=counts.device)
    return (k[None, :, None] < counts[:, None, :]).float()


def _level_tensor(level: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A level as ``[B, 1]`` (per item) or a scalar tensor, on ``like``'s device and dtype."""
    lv = torch.as_tensor(level, dtype=like.dtype, device=like.device)
    if lv.dim() == 1:
        lv = lv[:, None]
    if not bool((lv > 0).all()):
        raise ValueError(f"VBR level must be > 0, got {level}")
    return lv


# ---- the network ---------------------------------------------------------------------------------------


class ImportanceNet(nn.Module):
    """Snake + WN conv (k=3) blocks narrowing ``in_channels -> widths... -> 1``, then a sigmoid.

    ``input_norm=True`` first divides the activation by one scalar, its RMS (the batch's in training,
    a running average at inference, like a one-number batch norm without centring). This is our
    addition for narrow backbones: the encoder body activation of the ``small``/``tiny`` configs
    starts small (RMS ~0.01 with PyTorch's default conv init, ~3e-5 with a std-0.02 init), where
    Snake is nearly the identity and the sigmoid mostly sees its biases, so the map can hardly
    depend on the audio early in training.
    One global scalar keeps the contrast between frames (silence stays quieter than speech); the
    decoder never needs ``p`` (the counts are in the bitstream), so it only steers the encoder.
    """

    running_rms: torch.Tensor  # scalar buffer (only with input_norm): running RMS of the input, 0 = unmeasured

    def __init__(self, in_channels: int, widths: tuple[int, ...], input_norm: bool = False,
                 momentum: float = 0.05) -> None:
        super().__init__()
        chans = [in_channels, *widths, 1]
        self.blocks = nn.Sequential(*[
            nn.Sequential(Snake1d(c_in), WNConv1d(c_in, c_out, kernel_size=3, padding=1))
            for c_in, c_out in zip(chans[:-1], chans[1:])
        ])
        self.input_norm = input_norm
        self.momentum = momentum
        if input_norm:
            self.register_buffer("running_rms", torch.zeros(()))  # 0 = not measured yet
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Variance-preserving init (std 1/sqrt(fan_in)), zero biases.

        The reference's std-0.02 init keeps the signal's scale only for ~1000-wide layers
        (0.02 sqrt(3 x 1024) ~ 1.1); through this net's narrowing layers at the ``small`` width it
        shrank the output and its gradient to ~1e-10, below Adam's epsilon.
        """
        for block in self.blocks:
            conv = dict(cast(nn.Sequential, block)[1].named_parameters())  # block = (Snake1d, WN conv)
            v, g = conv["parametrizations.weight.original1"], conv["parametrizations.weight.original0"]
            with torch.no_grad():
                v.normal_(0.0, 1.0 / math.sqrt(v.shape[1] * v.shape[2]))
                g.copy_(v.norm(dim=(1, 2), keepdim=True))
                conv["bias"].zero_()

    def _normalise(self, feat: torch.Tensor) -> torch.Tensor:
        """``feat`` divided by its RMS (batch in training, running at inference) when ``input_norm``."""
        if not self.input_norm:
            return feat
        if self.training:
            rms = feat.detach().pow(2).mean().sqrt().clamp(min=1e-12)
            with torch.no_grad():
                if float(self.running_rms) == 0.0:
                    self.running_rms.copy_(rms)
                else:
                    self.running_rms.lerp_(rms, self.momentum)
        elif float(self.running_rms) == 0.0:  # an untrained model: fall back to this input's RMS
            rms = feat.pow(2).mean().sqrt().clamp(min=1e-12)
        else:
            rms = self.running_rms
        return feat / rms

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Importance ``[B, T]`` in (0, 1) from the encoder activation ``[B, C, T]``."""
        return torch.sigmoid(self.blocks(self._normalise(feat)))[:, 0]


@dataclass
class Stages:
    """All RVQ stages of a latent: per-stage outputs ``[B, N, D, T]``, codes and per-frame losses ``[B, N, T]``."""

    zq: torch.Tensor
    codes: torch.Tensor
    commitment: torch.Tensor
    codebook: torch.Tensor
    residual: torch.Tensor | None = None  # [B] the RVQ's residual alignment (bench.models.rvq), training only


class VRVQ(DAC):
    """The DAC generator plus an importance net; codes a variable number of codebooks per frame."""

    def __init__(self, config: VRVQConfig) -> None:
        super().__init__(config.backbone)
        self.vrvq_config = config
        self.importance = ImportanceNet(self.encoder.body_channels, config.resolved_importance_widths(),
                                        input_norm=config.importance_input_norm)

    @property
    def n_codebooks(self) -> int:
        """``N_q``, the number of RVQ stages (the most codebooks a frame can use)."""
        return self.config.n_codebooks

    # --- analysis -------------------------------------------------------------------------------
    @overload
    def analyse(self, wav: torch.Tensor, with_importance: Literal[True] = True
                ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def analyse(self, wav: torch.Tensor, with_importance: Literal[False]) -> tuple[torch.Tensor, None]: ...

    def analyse(self, wav: torch.Tensor, with_importance: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(latent ``z [B, D, T]``, importance ``p [B, T]`` or None) of audio padded to whole frames."""
        feat = self.encoder.body(self.pad(wav))
        z = self.encoder.head(feat)
        p = self.importance(feat) if with_importance else None
        return z, p

    def quantize_stages(self, z: torch.Tensor, n_stages: int | None = None) -> Stages:
        """Run the first ``n_stages`` RVQ stages on the unmasked residual chain (per-frame losses)."""
        n = self.n_codebooks if n_stages is None else n_stages
        residual = z
        zqs, codes, commits, books = [], [], [], []
        aligned = z.new_zeros(z.shape[0]) if self.training else None
        for stage in self.quantizer.stages(n):
            z_e = stage.in_proj(residual)
            idx = stage.nearest(z_e)
            z_c = stage.lookup(idx)
            commits.append((z_e - z_c.detach()).pow(2).mean(dim=1))
            books.append((z_c - z_e.detach()).pow(2).mean(dim=1))
            zq = stage.out_proj(z_e + (z_c - z_e).detach())  # straight-through
            if aligned is not None:
                aligned = aligned + residual_alignment(residual, stage.out_proj(z_c.detach()))
            residual = residual - zq
            zqs.append(zq)
            codes.append(idx)
        return Stages(torch.stack(zqs, 1), torch.stack(codes, 1), torch.stack(commits, 1), torch.stack(books, 1),
                      aligned)

    def frame_mask(self, p: torch.Tensor, level: float | torch.Tensor) -> torch.Tensor:
        """Straight-through mask ``[B, N_q, T]`` for importance ``p`` at ``level`` (scalar or ``[B]``)."""
        cfg = self.vrvq_config
        scaled = p * _level_tensor(level, p) * self.n_codebooks
        return importance_to_mask(scaled, self.n_codebooks, cfg.surrogate, cfg.alpha)

    # --- training / evaluation forward -----------------------------------------------------------
    def forward(self, wav: torch.Tensor, n_codebooks: int | None = None,
                level: float | torch.Tensor | None = None) -> GeneratorOutput:
        """Encode, mask, decode. Exactly one mode:

        * ``n_codebooks=n``: CBR, the first n codebooks on every frame;
        * ``level=L`` (float or per-item ``[B]``): VBR with the importance map scaled by ``L x N_q``;
        * neither, in training mode only: the VRVQ training recipe (random level per item, 25% full).

        ``extra`` holds ``importance [B, T]`` (or None), ``mask [B, N_q, T]`` (hard values),
        ``counts [B, T]``, ``rate_loss`` (mean importance over the importance-mapped items) and
        ``vbr_items [B]`` (bool).
        """
        if n_codebooks is not None and level is not None:
            raise ValueError("give n_codebooks (CBR) or level (VBR), not both")
        if n_codebooks is None and level is None and not self.training:
            raise ValueError("VRVQ needs n_codebooks (CBR) or level (VBR) outside training")
        b = wav.shape[0]
        nq = self.n_codebooks
        p: torch.Tensor | None
        if n_codebooks is not None:
            n = self.quantizer._check_n(n_codebooks)
            z, p = self.analyse(wav, with_importance=False)
            stages = self.quantize_stages(z, n)
            mask = torch.ones(b, n, z.shape[-1], device=z.device, dtype=z.dtype)
            vbr_items = torch.zeros(b, dtype=torch.bool, device=z.device)
        else:
            z, p = self.analyse(wav)
            stages = self.quantize_stages(z)
            if level is not None:
                mask = self.frame_mask(p, level)
                vbr_items = torch.ones(b, dtype=torch.bool, device=z.device)
            else:
                mask, vbr_items = self._training_mask(p)
        masked = stages.zq * mask[:, :, None, :]
        z_q = masked.sum(dim=1)
        hard = mask.detach()
        commitment = (stages.commitment * hard).sum(dim=1).mean(dim=-1)
        codebook = (stages.codebook * hard).sum(dim=1).mean(dim=-1)
        counts = hard.sum(dim=1).round().long()
        audio = self.decoder(z_q)[..., : wav.shape[-1]]
        if p is not None and bool(vbr_items.any()):
            rate_loss = p[vbr_items].mean()
        else:
            rate_loss = z.new_zeros(())
        extra = {"importance": p, "mask": hard, "counts": counts, "rate_loss": rate_loss, "vbr_items": vbr_items,
                 "n_codebooks_total": nq}
        if stages.residual is not None:
            extra["residual_loss"] = stages.residual
        return GeneratorOutput(audio, stages.codes, commitment, codebook, counts.max(dim=-1).values, extra)

    def _training_mask(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The recipe's mask: random levels for the first items, all codebooks for the last 25%."""
        cfg = self.vrvq_config
        b = p.shape[0]
        n_full = int(b * cfg.full_codebook_rate)
        n_vbr = b - n_full
        levels = torch.rand(b, device=p.device, dtype=p.dtype) * (cfg.level_max - cfg.level_min) + cfg.level_min
        mask = self.frame_mask(p, levels)
        if n_full:
            keep = torch.ones(b, 1, 1, device=p.device, dtype=p.dtype)
            keep[n_vbr:] = 0.0
            mask = mask * keep + (1.0 - keep)  # full items: exactly 1, no gradient to p
        vbr_items = torch.arange(b, device=p.device) < n_vbr
        return mask, vbr_items

    # --- inference --------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_frames(self, wav: torch.Tensor, *, n_codebooks: int | None = None,
                      level: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes ``[B, N_q, T]``, counts ``[B, T]``); codes beyond a frame's count are set to 0.

        CBR (``n_codebooks``) computes only the first n stages; VBR (``level``) all of them.
        """
        if self.training:
            raise RuntimeError("VRVQ.encode_frames is for inference; call model.eval() first")
        if n_codebooks is not None and level is None:
            n = self.quantizer._check_n(n_codebooks)
            z, _ = self.analyse(wav, with_importance=False)
            codes = self.quantize_stages(z, n).codes
            counts = torch.full((wav.shape[0], z.shape[-1]), n, dtype=torch.long, device=z.device)
            return codes, counts
        if level is None or n_codebooks is not None:
            raise ValueError("give exactly one of n_codebooks (CBR) or level (VBR)")
        z, p = self.analyse(wav)
        counts = counts_from_importance(p, level, self.n_codebooks)
        codes = self.quantize_stages(z).codes
        codes = codes * prefix_mask(counts, self.n_codebooks).long()
        return codes, counts

    @torch.no_grad()
    def decode_frames(self, codes: torch.Tensor, counts: torch.Tensor, num_samples: int | None = None
                      ) -> torch.Tensor:
        """Audio ``[B, 1, T]`` from codes ``[B, n, frames]`` of which the first ``counts[b, t]`` are used."""
        if codes.dim() != 3 or counts.shape != (codes.shape[0], codes.shape[2]):
            raise ValueError(f"codes [B, n, T] and counts [B, T] do not fit: {tuple(codes.shape)}, "
                             f"{tuple(counts.shape)}")
        n = self.quantizer._check_n(int(codes.shape[1]))
        if counts.numel() and (int(counts.min()) < 1 or int(counts.max()) > n):
            raise ValueError(f"codebook counts must be in 1..{n}")
        mask = prefix_mask(counts, n)
        stages = self.quantizer.stages(n)
        z_q = stages[0].decode_indices(codes[:, 0]) * mask[:, 0:1]
        for k in range(1, n):
            z_q = z_q + stages[k].decode_indices(codes[:, k]) * mask[:, k : k + 1]
        audio = self.decoder(z_q)
        return audio if num_samples is None else audio[..., :num_samples]
