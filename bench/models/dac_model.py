"""The Improved RVQGAN (DAC) generator: encoder, residual VQ, decoder, and its named configs.

Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN". The published configs
(44.1, 24 and 16 kHz) reproduce the released models' shapes; ``small`` is the 24 kHz model this
repository trains and ships (sized for CPU training), ``tiny`` is for tests.

The encoder is split into ``body`` (input conv + strided blocks) and ``head`` (Snake + conv to the
latent) so that VRVQ can tap the activation between them for its importance network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, cast

import torch
from torch import nn

from bench.models.layers import DecoderBlock, EncoderBlock, Snake1d, WNConv1d, check_config_fields, init_conv_weights
from bench.models.rvq import LOOKUPS, QuantizerOutput, ResidualVQ


@dataclass(frozen=True)
class DACConfig:
    """Architecture of a DAC generator. ``latent_dim`` 0 means ``encoder_dim * 2**len(encoder_rates)``."""

    sample_rate_hz: int = 44100
    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int = 0
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    # False: the released transposed convs (no output padding), which lose one sample per odd-stride
    # decoder block; needed to reproduce the published 16/24 kHz weights. Omitted from cards when True.
    odd_stride_output_padding: bool = True
    # "cosine": DAC's L2-normalised lookup; "euclidean": the plain distance (bench.models.rvq). Omitted
    # from cards when "cosine", so cards written before the option read unchanged.
    codebook_lookup: str = "cosine"

    def __post_init__(self) -> None:
        if self.codebook_lookup not in LOOKUPS:
            raise ValueError(f"codebook_lookup must be one of {LOOKUPS}, got {self.codebook_lookup!r}")
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise ValueError(f"encoder rates {self.encoder_rates} and decoder rates {self.decoder_rates} "
                             "must have the same product (the hop)")
        if self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of two for fixed-width codes, got {self.codebook_size}")

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of the encoder strides."""
        return math.prod(self.encoder_rates)

    @property
    def frame_rate_hz(self) -> float:
        """Latent frames (code columns) per second of audio."""
        return self.sample_rate_hz / self.hop_length

    @property
    def bits_per_code(self) -> int:
        """Bits of one code in the fixed-width bitstream: log2 of the (power-of-two) codebook size."""
        return int(math.log2(self.codebook_size))

    @property
    def effective_latent_dim(self) -> int:
        """The latent width actually built: ``latent_dim``, or the last encoder block's width when 0."""
        return self.latent_dim or self.encoder_dim * 2 ** len(self.encoder_rates)

    def kbps(self, n_codebooks: int) -> float:
        """Nominal bitrate: frame rate x codebooks x log2(K)."""
        return self.frame_rate_hz * n_codebooks * self.bits_per_code / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for a checkpoint card (tuples as lists); :meth:`from_dict` inverts it."""
        d = asdict(self)
        d["encoder_rates"] = list(self.encoder_rates)
        d["decoder_rates"] = list(self.decoder_rates)
        if self.odd_stride_output_padding:  # the default: keep cards written before the option unchanged
            del d["odd_stride_output_padding"]
        if self.codebook_lookup == "cosine":  # likewise
            del d["codebook_lookup"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DACConfig":
        """Rebuild a config from a card's ``config`` entry; unknown fields are an error, not ignored."""
        check_config_fields(cls, d, "DAC config fields")
        d = dict(d)
        for key in ("encoder_rates", "decoder_rates"):
            if key in d:
                d[key] = tuple(int(r) for r in d[key])
        return cls(**d)


CONFIGS: dict[str, DACConfig] = {
    # The released DAC models (descript-audio-codec v1.0.0 weights).
    "44k": DACConfig(44100, 64, (2, 4, 8, 8), 0, 1536, (8, 8, 4, 2), 9, 1024, 8, 0.5),
    "24k": DACConfig(24000, 64, (2, 4, 5, 8), 0, 1536, (8, 5, 4, 2), 32, 1024, 8, 0.5),
    "16k": DACConfig(16000, 64, (2, 4, 5, 8), 0, 1536, (8, 5, 4, 2), 12, 1024, 8, 0.5),
    # Shipped here: 24 kHz, 75 frames/s, 8 x 10-bit codebooks = 0.75..6 kbps; sized for CPU training.
    "small": DACConfig(24000, 8, (2, 4, 5, 8), 128, 192, (8, 5, 4, 2), 8, 1024, 8, 0.5),
    # Tests only: 16 kHz, hop 40, 4 x 6-bit codebooks.
    "tiny": DACConfig(16000, 4, (2, 4, 5), 32, 32, (5, 4, 2), 4, 64, 4, 0.5),
}


def get_config(name: str) -> DACConfig:
    """The named config from :data:`CONFIGS`; an unknown name raises ``KeyError`` with a suggestion."""
    if name not in CONFIGS:
        from bench.registry import did_you_mean

        raise KeyError(f"unknown DAC config {name!r}.{did_you_mean(name, list(CONFIGS))}")
    return CONFIGS[name]


class LatentHead(nn.Sequential):
    """Snake -> Conv(k=3) to the latent, with a data-dependent start (``data_init``).

    PyTorch's default conv initialisation shrinks the signal at every block: a fresh ``small``
    encoder gives a latent of about 1e-2 RMS per element for speech at -16 LUFS, so the decoder
    starts from a near-zero, near-linear input (Snake is about the identity there) and first has to
    grow its weight-norm gains at Adam's ~lr per step. The released DAC escaped this only because its
    random ``N(0, 1)`` codebooks fed the decoder large vectors whatever the latent (which in turn left
    the residual stages nothing to code; see ``bench.models.rvq``). Here, on the first training call of
    a fresh model, the conv's weight-norm gains and biases are set so that this batch's latent has zero
    mean and unit RMS per channel: the data-dependent initialisation of Salimans & Kingma (2016, weight
    normalisation, section 2.2). Loaded weights count as initialised (see :meth:`_load_from_state_dict`);
    the state-dict keys are those of the plain ``nn.Sequential`` this replaces.
    """

    initialised: torch.Tensor  # [] bool, not saved

    def __init__(self, channels: int, latent_dim: int, data_init: bool = True) -> None:
        super().__init__(Snake1d(channels), WNConv1d(channels, latent_dim, kernel_size=3, padding=1))
        self.register_buffer("initialised", torch.tensor(not data_init), persistent=False)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        """Load as usual; loaded weights are trained ones, never to be re-initialised from data."""
        super()._load_from_state_dict(state_dict, prefix, *args)
        if any(k.startswith(prefix) for k in state_dict):
            self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, latent_dim, T]`` of body features ``x [B, C, T]`` (data init on the first training call)."""
        if self.training and not bool(self.initialised):
            self._init_from(x.detach())
        return super().forward(x)

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        """Weight-norm gain and bias so that the latent of ``x`` has zero mean and unit RMS per channel."""
        conv = cast(nn.Conv1d, self[1])
        y = super().forward(x)
        mean = y.mean(dim=(0, 2))
        std = y.std(dim=(0, 2), correction=0).clamp_min(1e-5)
        gain = cast(nn.Parameter, conv.parametrizations.weight.original0)  # type: ignore[union-attr]
        gain.div_(std.view(-1, 1, 1))
        bias = cast(torch.Tensor, conv.bias)
        bias.sub_(mean).div_(std)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(gain, src=0)
            torch.distributed.broadcast(bias, src=0)
        self.initialised.fill_(True)


class Encoder(nn.Module):
    """Conv(k=7) -> strided EncoderBlocks (channels double each block) -> Snake -> Conv(k=3) to the latent."""

    def __init__(self, dim: int, rates: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, dim, kernel_size=7, padding=3)]
        for stride in rates:
            layers.append(EncoderBlock(dim, dim * 2, stride))
            dim *= 2
        self.body = nn.Sequential(*layers)
        self.body_channels = dim
        self.head = LatentHead(dim, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, latent_dim, T / hop]`` from audio ``[B, 1, T]`` (T a multiple of the hop)."""
        return self.head(self.body(x))


class Decoder(nn.Module):
    """Conv(k=7) -> DecoderBlocks (channels halve each block) -> Snake -> Conv(k=7) -> tanh."""

    def __init__(self, latent_dim: int, dim: int, rates: tuple[int, ...], odd_stride_output_padding: bool = True
                 ) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(latent_dim, dim, kernel_size=7, padding=3)]
        for i, stride in enumerate(rates):
            block = DecoderBlock(dim // 2**i, dim // 2 ** (i + 1), stride)
            if not odd_stride_output_padding:  # the released layout: no output padding (weights unaffected)
                cast(nn.ConvTranspose1d, block.block[1]).output_padding = (0,)
            layers.append(block)
        out_dim = dim // 2 ** len(rates)
        layers += [Snake1d(out_dim), WNConv1d(out_dim, 1, kernel_size=7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, frames * hop]`` in [-1, 1] from a latent ``[B, latent_dim, frames]``."""
        return self.model(z)


@dataclass
class GeneratorOutput:
    """What a generator's forward pass returns, for the trainers' losses.

    ``audio [B, 1, T]``, ``codes [B, n, frames]`` (int64), ``commitment_loss``/``codebook_loss`` ``[B]``,
    ``n_active [B]`` codebooks used per item, and model-specific values in ``extra`` (DAC's
    ``residual_loss [B]``, see ``bench.models.rvq``; VRVQ's importance, mask and rate loss).
    """

    audio: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    n_active: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)


class DAC(nn.Module):
    """Encoder + residual VQ + decoder for mono audio ``[B, 1, T]`` in [-1, 1] at ``config.sample_rate_hz``."""

    def __init__(self, config: DACConfig) -> None:
        super().__init__()
        self.config = config
        latent = config.effective_latent_dim
        self.encoder = Encoder(config.encoder_dim, config.encoder_rates, latent)
        self.quantizer = ResidualVQ(latent, config.n_codebooks, config.codebook_size, config.codebook_dim,
                                    config.quantizer_dropout, lookup=config.codebook_lookup)
        self.decoder = Decoder(latent, config.decoder_dim, config.decoder_rates, config.odd_stride_output_padding)
        self.apply(init_conv_weights)

    @property
    def hop_length(self) -> int:
        """Samples per code frame (see :attr:`DACConfig.hop_length`)."""
        return self.config.hop_length

    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad with zeros to a whole number of frames."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"DAC expects mono audio [B, 1, T], got {tuple(wav.shape)}")
        frames = max(1, math.ceil(wav.shape[-1] / self.hop_length))
        return nn.functional.pad(wav, (0, frames * self.hop_length - wav.shape[-1]))

    def quantize(self, wav: torch.Tensor, n_codebooks: int) -> QuantizerOutput:
        """Pad ``wav [B, 1, T]`` to whole frames, encode, and quantise with ``n_codebooks`` stages."""
        return self.quantizer(self.encoder(self.pad(wav)), n_codebooks)

    def forward(self, wav: torch.Tensor, n_codebooks: int) -> GeneratorOutput:
        """Encode, quantise with (at most) ``n_codebooks`` and decode; output has the input's length."""
        q = self.quantize(wav, n_codebooks)
        audio = self.decoder(q.z_q)[..., : wav.shape[-1]]
        return GeneratorOutput(audio, q.codes, q.commitment_loss, q.codebook_loss, q.n_active,
                               extra={"residual_loss": q.residual_loss})

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_codebooks: int) -> torch.Tensor:
        """Codes ``[B, n_codebooks, frames]`` (eval semantics: exactly the first n stages)."""
        if self.training:
            raise RuntimeError("DAC.encode is for inference; call model.eval() first")
        return self.quantize(wav, n_codebooks).codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Audio ``[B, 1, T]`` from codes ``[B, n, frames]``; trimmed to ``num_samples`` if given.

        Without ``odd_stride_output_padding`` the decoder runs a few samples short of ``frames * hop``;
        then the output is right-padded with zeros to ``num_samples`` so callers get the length they asked.
        """
        audio = self.decoder(self.quantizer.decode_codes(codes))
        if num_samples is None:
            return audio
        if not self.config.odd_stride_output_padding and audio.shape[-1] < num_samples:
            audio = nn.functional.pad(audio, (0, num_samples - audio.shape[-1]))
        return audio[..., :num_samples]


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters in ``module`` (for model cards and logs)."""
    return sum(p.numel() for p in module.parameters())
