"""EuleroDec (Cerovaz, Mancusi, Rodola, arXiv 2601.17517): a complex-valued RVQ-VAE on the STFT.

Pipeline, all complex64 between analysis and synthesis (no real/imaginary channel split):

    wav [B, 1, T] at 24 kHz
      -> STFT (n_fft 512, hop 64, Hann)          [B, 1, 257, frames]; the Nyquist bin is dropped -> 256
      -> phase-preserving magnitude compression  X |X|^(alpha - 1)   (alpha = 0.5; 1 disables it)
      -> encoder: complex conv, 5 dilated complex residual blocks with 4 downsampling stages
         (frequency / 2 at every stage; time / 2 at stages 1, 3, 4 for 6 kbps, stages 1, 3 for 12 kbps),
         axial attention (time, then frequency just before quantisation), 1x1 projection
      -> each latent frame [C_lat x F_lat] flattened to one complex vector -> 12-stage RVQ (2048 entries)
      -> decoder: the mirror image (transposed complex convolutions for upsampling)
      -> decompression, zero Nyquist bin, inverse STFT.

Frame rate 24000 / 64 / 8 = 46.875 Hz -> 12 x 11 bits x 46.875 = 6.1875 kbps; with 4x time
compression 93.75 Hz -> 12.375 kbps.

Our choices where the paper is not specific (documented, configurable): the magnitude compression
(helps a network see a 60 dB dynamic range), dilations (1, 2, 4, 8, 1) along time, local time
attention (window of +-``time_window`` latent frames, so minute-long files cost linear memory), a
learnable complex per-bin embedding for frequency attention, and complex batch normalisation
(2x2 whitening) before each modReLU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from bench.models.complex import (
    AxialAttention2d,
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexWhitening2d,
    ModReLU,
)
from bench.models.complex_rvq import ComplexResidualVQ
from bench.models.layers import check_config_fields


@dataclass
class EuleroDecConfig:
    """Architecture and quantiser settings; stored verbatim in checkpoint cards."""

    name: str = "small6"
    sample_rate_hz: int = 24000
    n_fft: int = 512
    hop_length: int = 64
    channels: tuple[int, ...] = (8, 16, 24, 32, 32)  # before stage 1..4, and after stage 4
    latent_channels: int = 4
    freq_strides: tuple[int, ...] = (2, 2, 2, 2)
    time_strides: tuple[int, ...] = (2, 1, 2, 2)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)
    stem_stride: bool = False  # True: the input conv does stage 1's downsampling (no full-res block)
    num_heads: int = 2
    time_window: int = 16
    compress_alpha: float = 0.5
    num_quantizers: int = 12
    codebook_size: int = 2048
    beta: float = 0.05
    decay_start: float = 0.98
    decay_end: float = 0.999
    decay_warmup_steps: int = 5000
    dead_after_steps: int = 200
    codebook_weight_power: float = 0.0  # 0: plain EMA means (paper); 2: inverse-energy weighted (small configs)

    def __post_init__(self) -> None:
        for f in ("channels", "freq_strides", "time_strides", "dilations"):
            setattr(self, f, tuple(int(v) for v in getattr(self, f)))
        if len(self.channels) != 5 or len(self.dilations) != 5:
            raise ValueError("EuleroDec has 5 residual blocks: channels and dilations need 5 entries")
        if len(self.freq_strides) != 4 or len(self.time_strides) != 4:
            raise ValueError("EuleroDec has 4 downsampling stages: strides need 4 entries")
        if self.freq_bins % self.freq_downsample:
            raise ValueError(f"{self.freq_bins} bins not divisible by frequency downsampling {self.freq_downsample}")

    # --- derived quantities -----------------------------------------------------------------
    @property
    def freq_bins(self) -> int:
        """Bins the network sees (the Nyquist bin of the n_fft / 2 + 1 is dropped)."""
        return self.n_fft // 2

    @property
    def freq_downsample(self) -> int:
        """Factor by which the encoder shrinks the frequency axis (product of the frequency strides)."""
        return math.prod(self.freq_strides)

    @property
    def time_downsample(self) -> int:
        """Factor by which the encoder shrinks the time axis (STFT frames per latent frame)."""
        return math.prod(self.time_strides)

    @property
    def latent_freq_bins(self) -> int:
        """Frequency bins left in the latent after downsampling."""
        return self.freq_bins // self.freq_downsample

    @property
    def latent_dim_complex(self) -> int:
        """Complex dimension ``H`` of one flattened latent frame (channels x bins), the RVQ's vector size."""
        return self.latent_channels * self.latent_freq_bins

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per latent (code) frame: STFT hop x time downsampling."""
        return self.hop_length * self.time_downsample

    @property
    def frame_rate_hz(self) -> float:
        """Latent (code) frames per second of audio."""
        return self.sample_rate_hz / self.samples_per_frame

    @property
    def bits_per_code(self) -> int:
        """Bits one code takes in the bitstream: ceil(log2(codebook_size))."""
        return int(math.ceil(math.log2(self.codebook_size)))

    def nominal_kbps(self, n_quantizers: int | None = None) -> float:
        """Bitrate with ``n_quantizers`` stages (all by default): frame rate x stages x bits per code."""
        n = self.num_quantizers if n_quantizers is None else n_quantizers
        return self.frame_rate_hz * n * self.bits_per_code / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for a checkpoint card (tuples as lists); :meth:`from_dict` inverts it."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EuleroDecConfig":
        """Rebuild a config from a card's ``config`` entry; unknown keys are an error, not ignored."""
        check_config_fields(cls, d, "EuleroDec config keys")
        return cls(**d)


# Paper-size configs are our reading of the paper (its exact widths are not all stated): wide
# channels, 12 x 2048 codebooks. `small*` are sized for CPU training and a < 10 MB fp16 checkpoint
# (12 x 2048 x 2H codebook floats dominate the size); `tiny` is for tests.
CONFIGS: dict[str, EuleroDecConfig] = {
    "6kbps": EuleroDecConfig(name="6kbps", channels=(32, 64, 128, 256, 256), latent_channels=16,
                             num_heads=8, time_strides=(2, 1, 2, 2), decay_warmup_steps=10000),
    "12kbps": EuleroDecConfig(name="12kbps", channels=(32, 64, 128, 256, 256), latent_channels=16,
                              num_heads=8, time_strides=(2, 1, 2, 1), decay_warmup_steps=10000),
    "small6": EuleroDecConfig(name="small6", stem_stride=True, channels=(4, 8, 12, 16, 16), latent_channels=4,
                              time_strides=(2, 1, 2, 2), decay_warmup_steps=2000, dead_after_steps=400,
                              codebook_weight_power=2.0),
    "small12": EuleroDecConfig(name="small12", stem_stride=True, channels=(4, 8, 12, 16, 16), latent_channels=4,
                               time_strides=(2, 1, 2, 1), decay_warmup_steps=2000, dead_after_steps=200,
                               codebook_weight_power=2.0),
    "tiny": EuleroDecConfig(name="tiny", stem_stride=True, channels=(2, 4, 4, 8, 8), latent_channels=2,
                            time_strides=(2, 1, 2, 2), num_quantizers=12, codebook_size=64,
                            num_heads=2, time_window=4, decay_warmup_steps=50, dead_after_steps=10),
}


def get_config(name: str) -> EuleroDecConfig:
    """A fresh copy of the named config from :data:`CONFIGS` (safe to modify: the dataclass is mutable)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown EuleroDec config {name!r}; known: {', '.join(CONFIGS)}")
    return EuleroDecConfig.from_dict(CONFIGS[name].to_dict())


# --- analysis / synthesis ----------------------------------------------------------------------

class STFTFrontend(nn.Module):
    """STFT analysis and its inverse (Hann, ``center=True``), plus the magnitude compression.

    ``analyse`` pads the waveform so the frame count is a multiple of the time downsampling and
    the last ``n_fft / 2`` samples are padding, then drops the last centred frame; ``synthesise``
    appends a zero frame and a zero Nyquist bin and crops to the input length.
    """

    window: torch.Tensor  # [n_fft] Hann window buffer (not saved in checkpoints)

    def __init__(self, n_fft: int, hop_length: int, frame_multiple: int, compress_alpha: float) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.frame_multiple = n_fft, hop_length, frame_multiple
        self.compress_alpha = compress_alpha
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def padded_length(self, num_samples: int) -> int:
        """Samples after padding: at least ``num_samples + n_fft/2``, a whole number of latent frames."""
        block = self.hop_length * self.frame_multiple
        return int(math.ceil((num_samples + self.n_fft // 2) / block) * block)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, T] real -> [B, 1, n_fft/2 + 1, T/hop + 1] complex64."""
        b, c, t = wav.shape
        spec = torch.stft(wav.reshape(b * c, t).float(), self.n_fft, self.hop_length, window=self.window,
                          center=True, return_complex=True)
        return spec.view(b, c, spec.shape[-2], spec.shape[-1])

    def istft(self, spec: torch.Tensor, num_samples: int) -> torch.Tensor:
        """[B, 1, n_fft/2 + 1, frames] complex -> [B, 1, num_samples] real (inverse of :meth:`stft`)."""
        b, c, f, n = spec.shape
        wav = torch.istft(spec.reshape(b * c, f, n), self.n_fft, self.hop_length, window=self.window,
                          center=True, length=num_samples)
        return wav.view(b, c, num_samples)

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        """Phase-preserving magnitude compression ``x |x|^(alpha - 1)``, elementwise (any shape)."""
        if self.compress_alpha == 1.0:
            return x
        return x * (x.abs() + 1e-7).pow(self.compress_alpha - 1.0)

    def decompress(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`compress`: ``y |y|^(1/alpha - 1)``, elementwise (any shape)."""
        if self.compress_alpha == 1.0:
            return y
        return y * (y.abs() + 1e-7).pow(1.0 / self.compress_alpha - 1.0)

    def analyse(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, T] -> compressed complex spectrogram [B, 1, n_fft/2, frames] (frames % multiple == 0)."""
        t = wav.shape[-1]
        padded = torch.nn.functional.pad(wav, (0, self.padded_length(t) - t))
        spec = self.stft(padded)[:, :, :-1, :-1]  # drop Nyquist bin and the last (padding-centred) frame
        return self.compress(spec)

    def synthesise(self, spec_c: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Compressed [B, 1, n_fft/2, frames] -> waveform [B, 1, num_samples] (inverse of :meth:`analyse`)."""
        spec = self.decompress(spec_c)
        spec = torch.nn.functional.pad(torch.view_as_real(spec), (0, 0, 0, 1, 0, 1))  # +1 frame, +1 bin
        return self.istft(torch.view_as_complex(spec.contiguous()), self.padded_length(num_samples))[..., :num_samples]


# --- blocks ------------------------------------------------------------------------------------

class ComplexResBlock(nn.Module):
    """x + conv1x1(act(norm(conv3x3_dilated(act(norm(x)))))), dilation along time."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ComplexWhitening2d(channels), ModReLU(channels),
            ComplexConv2d(channels, channels, 3, padding=(1, dilation), dilation=(1, dilation)),
            ComplexWhitening2d(channels), ModReLU(channels),
            ComplexConv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update, complex ``[B, C, F, T] -> [B, C, F, T]``."""
        return x + self.body(x)


def _kernel(stride: int) -> tuple[int, int]:
    """(kernel, padding) giving exactly n / stride (conv) or n * stride (transposed conv)."""
    return (4, 1) if stride == 2 else (3, 1)


def _stage_strides(cfg: EuleroDecConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Strides of the 4 Down/Up layers; with ``stem_stride`` stage 1's stride moves to the input conv."""
    if cfg.stem_stride:
        return (1,) + cfg.freq_strides[1:], (1,) + cfg.time_strides[1:]
    return cfg.freq_strides, cfg.time_strides


class Down(nn.Module):
    """Encoder downsampling stage: whitening, modReLU, then a strided complex conv (``cin -> cout``)."""

    def __init__(self, cin: int, cout: int, f_stride: int, t_stride: int) -> None:
        super().__init__()
        (kf, pf), (kt, pt) = _kernel(f_stride), _kernel(t_stride)
        self.body = nn.Sequential(ComplexWhitening2d(cin), ModReLU(cin),
                                  ComplexConv2d(cin, cout, (kf, kt), stride=(f_stride, t_stride), padding=(pf, pt)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Complex ``[B, cin, F, T] -> [B, cout, F / f_stride, T / t_stride]``."""
        return self.body(x)


class Up(nn.Module):
    """Decoder upsampling stage, the mirror of :class:`Down`: whitening, modReLU, transposed complex conv."""

    def __init__(self, cin: int, cout: int, f_stride: int, t_stride: int) -> None:
        super().__init__()
        (kf, pf), (kt, pt) = _kernel(f_stride), _kernel(t_stride)
        self.norm, self.act = ComplexWhitening2d(cin), ModReLU(cin)
        self.conv = ComplexConvTranspose2d(cin, cout, (kf, kt), stride=(f_stride, t_stride), padding=(pf, pt))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Complex ``[B, cin, F, T] -> [B, cout, F * f_stride, T * t_stride]``."""
        return self.conv(self.act(self.norm(x)))


class Encoder(nn.Module):
    """Input conv, 5 residual blocks with 4 downsampling stages, time then frequency attention, 1x1 projection."""

    def __init__(self, cfg: EuleroDecConfig) -> None:
        super().__init__()
        ch = cfg.channels
        fs, ts = _stage_strides(cfg)
        if cfg.stem_stride:
            (kf, pf), (kt, pt) = _kernel(cfg.freq_strides[0]), _kernel(cfg.time_strides[0])
            self.conv_in = ComplexConv2d(1, ch[0], (kf, kt), stride=(cfg.freq_strides[0], cfg.time_strides[0]),
                                         padding=(pf, pt))
        else:
            self.conv_in = ComplexConv2d(1, ch[0], 5, padding=2)
        blocks: list[nn.Module] = []
        for i in range(4):
            blocks += [ComplexResBlock(ch[i], cfg.dilations[i]), Down(ch[i], ch[i + 1], fs[i], ts[i])]
        blocks.append(ComplexResBlock(ch[4], cfg.dilations[4]))
        self.blocks = nn.Sequential(*blocks)
        self.time_attn = AxialAttention2d(ch[4], "time", cfg.num_heads, cfg.time_window)
        self.freq_attn = AxialAttention2d(ch[4], "freq", cfg.num_heads, 0, cfg.latent_freq_bins)
        self.proj = nn.Sequential(ComplexWhitening2d(ch[4]), ComplexConv2d(ch[4], cfg.latent_channels, 1))

    def forward(self, spec_c: torch.Tensor) -> torch.Tensor:
        """Compressed spectrogram ``[B, 1, F, T]`` -> latent ``[B, latent_channels, F_lat, T_lat]`` (complex)."""
        h = self.blocks(self.conv_in(spec_c))
        return self.proj(self.freq_attn(self.time_attn(h)))


class Decoder(nn.Module):
    """The encoder's mirror: 1x1 projection, frequency then time attention, residual and upsampling blocks."""

    def __init__(self, cfg: EuleroDecConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.proj = ComplexConv2d(cfg.latent_channels, ch[4], 1)
        self.freq_attn = AxialAttention2d(ch[4], "freq", cfg.num_heads, 0, cfg.latent_freq_bins)
        self.time_attn = AxialAttention2d(ch[4], "time", cfg.num_heads, cfg.time_window)
        fs, ts = _stage_strides(cfg)
        blocks: list[nn.Module] = [ComplexResBlock(ch[4], cfg.dilations[4])]
        for i in reversed(range(4)):
            blocks += [Up(ch[i + 1], ch[i], fs[i], ts[i]), ComplexResBlock(ch[i], cfg.dilations[i])]
        self.blocks = nn.Sequential(*blocks)
        last: nn.Module
        if cfg.stem_stride:
            (kf, pf), (kt, pt) = _kernel(cfg.freq_strides[0]), _kernel(cfg.time_strides[0])
            last = ComplexConvTranspose2d(ch[0], 1, (kf, kt), stride=(cfg.freq_strides[0], cfg.time_strides[0]),
                                          padding=(pf, pt))
        else:
            last = ComplexConv2d(ch[0], 1, 5, padding=2)
        self.conv_out = nn.Sequential(ComplexWhitening2d(ch[0]), ModReLU(ch[0]), last)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, latent_channels, F_lat, T_lat]`` -> compressed spectrogram ``[B, 1, F, T]`` (complex)."""
        h = self.time_attn(self.freq_attn(self.proj(latent)))
        return self.conv_out(self.blocks(h))


# --- the model ---------------------------------------------------------------------------------

@dataclass
class EuleroDecOutput:
    """What :meth:`EuleroDec.forward` returns, for the trainer's losses."""

    wav: torch.Tensor            # [B, 1, T] reconstruction
    spec_c: torch.Tensor         # [B, 1, 256, frames] decoded compressed spectrogram
    codes: torch.Tensor          # [B, n, latent frames]
    commitment: torch.Tensor     # scalar (already weighted by beta)
    extras: dict[str, Any] = field(default_factory=dict)


class EuleroDec(nn.Module):
    """The codec network: ``forward`` for training, ``encode``/``decode`` for integer codes."""

    def __init__(self, cfg: EuleroDecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = STFTFrontend(cfg.n_fft, cfg.hop_length, cfg.time_downsample, cfg.compress_alpha)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantizer = ComplexResidualVQ(
            cfg.latent_dim_complex, cfg.num_quantizers, cfg.codebook_size, cfg.beta,
            cfg.decay_start, cfg.decay_end, cfg.decay_warmup_steps, cfg.dead_after_steps,
            weight_power=cfg.codebook_weight_power)

    # latent [B, C, F, T] <-> frames [B, T, C*F]
    def _to_frames(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent [B, C, F, T] -> one flattened complex vector per frame [B, T, C*F]."""
        b, c, f, t = latent.shape
        return latent.permute(0, 3, 1, 2).reshape(b, t, c * f)

    def _from_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_frames`: [B, T, C*F] -> [B, C, F, T]."""
        b, t, _ = frames.shape
        c, f = self.cfg.latent_channels, self.cfg.latent_freq_bins
        return frames.view(b, t, c, f).permute(0, 2, 3, 1)

    def _check(self, wav: torch.Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"EuleroDec expects mono audio [B, 1, T], got {tuple(wav.shape)}")

    def latent_frames(self, num_samples: int) -> int:
        """Code frames that ``num_samples`` of audio encode to (after padding)."""
        return self.frontend.padded_length(num_samples) // self.cfg.samples_per_frame

    def latent(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, T] -> the encoder's complex latent frames [B, frames, H], before quantisation."""
        self._check(wav)
        return self._to_frames(self.encoder(self.frontend.analyse(wav)))

    def forward(self, wav: torch.Tensor, n_quantizers: int | None = None, quantize: bool = True) -> EuleroDecOutput:
        """Training pass: ``wav [B, 1, T]`` -> reconstruction ``[B, 1, T]``, spectrogram, codes and commitment.

        ``quantize=False`` bypasses the RVQ (autoencoder warm-up): codes are empty and commitment is 0.
        """
        frames = self.latent(wav)
        if quantize:
            frames_q, codes, commit = self.quantizer(frames, n_quantizers)
        else:
            frames_q, codes, commit = frames, torch.zeros(0, dtype=torch.long), torch.zeros(())
        out_c = self.decoder(self._from_frames(frames_q))
        wav_hat = self.frontend.synthesise(out_c, wav.shape[-1])
        return EuleroDecOutput(wav_hat, out_c, codes, commit)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        """[B, 1, T] -> codes [B, n, frames] (int64). Eval mode required (EMA updates otherwise)."""
        if self.training:
            raise RuntimeError("call .eval() before encode(): training mode updates the codebooks")
        return self.quantizer(self.latent(wav), n_quantizers)[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Codes [B, n, frames] -> [B, 1, num_samples]."""
        expected = self.latent_frames(num_samples)
        if codes.shape[-1] != expected:
            raise ValueError(f"{num_samples} samples need {expected} code frames, got {codes.shape[-1]}")
        frames = self.quantizer.decode_codes(codes)
        return self.frontend.synthesise(self.decoder(self._from_frames(frames)), num_samples)

    def num_parameters(self) -> int:
        """Trainable parameters, counting a complex one as 2 reals (codebooks excluded: buffers)."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters())


def model_state_for_saving(model: EuleroDec, include_training_state: bool = False) -> dict[str, torch.Tensor]:
    """A flat real-valued state dict: complex tensors become ``name + '.__complex__'`` [..., 2] reals.

    Shipped checkpoints leave out the EMA statistics (``include_training_state=False``); resuming
    needs them.
    """
    skip = () if include_training_state else ("quantizer.ema_cluster_size", "quantizer.ema_embed_sum",
                                               "quantizer.last_used_step")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name in skip:
            continue
        if tensor.is_complex():
            out[name + ".__complex__"] = torch.view_as_real(tensor).contiguous()
        else:
            out[name] = tensor.contiguous()
    return out


def load_model_state(model: EuleroDec, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`model_state_for_saving`; missing EMA statistics are allowed, anything else is not."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(".__complex__"):
            state[name[: -len(".__complex__")]] = torch.view_as_complex(tensor.float().contiguous())
        else:
            state[name] = tensor
    own = model.state_dict()
    optional = {"quantizer.ema_cluster_size", "quantizer.ema_embed_sum", "quantizer.last_used_step"}
    missing = set(own) - set(state) - optional
    unexpected = set(state) - set(own)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the EuleroDec config: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    for name, tensor in state.items():
        if own[name].shape != tensor.shape:
            raise ValueError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, "
                             f"model expects {tuple(own[name].shape)}")
        state[name] = tensor.to(own[name].dtype)
    model.load_state_dict(state, strict=False)
    if "quantizer.ema_embed_sum" not in state:  # shipped weights: make EMA state consistent for fine-tuning
        with torch.no_grad():
            model.quantizer.get_buffer("ema_embed_sum").copy_(model.quantizer.get_buffer("codebooks"))
            model.quantizer.get_buffer("ema_cluster_size").fill_(1.0)
