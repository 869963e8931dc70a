"""Mimi (Kyutai, 2024, "Moshi: a speech-text foundation model for real-time dialogue") through ``transformers``.

* 24 kHz mono, 12.5 Hz frames (1920 samples), K = 2048 (11 bits), up to 32 codebooks: the first is
  the semantic (distilled) codebook, the rest an acoustic residual VQ, so every prefix of at least
  one codebook is a valid, identical-to-direct encoding.
* Operating points: 8, 16 and 32 codebooks (``mimi@8``), nominal 12.5 x n x 11 bits = 1.1, 2.2, 4.4 kbps.
* Weights: ``kyutai/mimi`` (CC-BY 4.0); code in transformers (Apache 2.0).
"""

from __future__ import annotations

import math

import torch

from bench.codecs._hf import HFCodec, HFCodes, Layout
from bench.codecs.base import CodecSpec, OperatingPoint, register_codec
from bench.hub import cached_snapshot

#: codebook counts offered as operating points (those within the model's depth)
CODEBOOK_COUNTS = (8, 16, 32)


class MimiCodec(HFCodec):
    """Mimi: operating points are the number of codebooks sent."""

    name = "mimi"
    hub_id = "kyutai/mimi"
    model_class = "MimiModel"
    model_type = "mimi"
    sample_rate_hz = 24_000
    channels = 1

    @property
    def frame_size(self) -> int:
        """Samples per code frame: the encoder's strides (upsampling ratios) times the stride-2 downsample."""
        return 2 * math.prod(int(r) for r in self.config["upsampling_ratios"])

    @property
    def frame_rate_hz(self) -> float:
        """Code frames per second (12.5 for the published model)."""
        return float(self.config.get("frame_rate") or self.sample_rate_hz / self.frame_size)

    @property
    def spec(self) -> CodecSpec:
        """CBR points at 8, 16 and 32 codebooks (those the config has), from config.json."""
        cfg = self.config
        depth = int(cfg["num_quantizers"])
        bits = self.bits_per_code
        counts = [n for n in CODEBOOK_COUNTS if n <= depth] or [depth]
        ops = [OperatingPoint(str(n), round(self.frame_rate_hz * n * bits / 1000, 4), {"n_codebooks": n})
               for n in counts]
        return CodecSpec(
            name=self.name, sample_rate_hz=self.sample_rate_hz, channels=1, operating_points=ops,
            family="mimi", frame_rate_hz=self.frame_rate_hz, codebook_sizes=[int(cfg["codebook_size"])] * depth,
            licence="code Apache-2.0; weights CC-BY-4.0", requires=["transformers", "safetensors"],
            description=f"Mimi (Kyutai) via transformers, weights {self.hub_id}",
        )

    #: not batched: on a random-init Mimi (CPU) a batch of 3 changed 3 of 832 codes of one item, at late RVQ
    #: stages (near ties flipped by a 4e-6 difference in a SEANet convolution's output at batch size 3)
    batch_exact = False

    def samples_per_frame(self) -> int:
        """The frame size (1920 samples), for batched coding."""
        return self.frame_size

    def context_seconds(self) -> float:
        """The transformers' attention window (``sliding_window`` frames, 20 s for the published model)."""
        window = self.config.get("sliding_window")
        return max(1.0, float(window) * self.frame_size / self.sample_rate_hz) if window else 1.0

    def layout(self, num_samples: int) -> Layout:
        """One chunk of ceil(T / frame_size) frames (causal convolutions pad the end)."""
        return Layout(1, max(1, math.ceil(num_samples / self.frame_size)), 0)

    def encode_full(self, wav: torch.Tensor, n_codebooks: int) -> HFCodes:
        """``MimiModel.encode`` with ``num_quantizers=n``: codes ``[B, n, frames]`` as one chunk."""
        codes = self.model.encode(wav, num_quantizers=n_codebooks, return_dict=True).audio_codes
        return HFCodes(codes.unsqueeze(0), None, 0)

    def decode_codes(self, payload: HFCodes) -> torch.Tensor:
        """``MimiModel.decode`` of the one chunk's codes."""
        return self.model.decode(payload.codes[0], return_dict=True).audio_values


register_codec("mimi", MimiCodec, in_all=cached_snapshot(MimiCodec.hub_id) is not None)
