"""X-codec (Ye et al., 2024, "Codec does matter: exploring the semantic shortcoming of codec for audio language model") through ``transformers``.

* 16 kHz mono, 50 Hz frames (320 samples), K = 1024 (10 bits), up to 8 codebooks: one residual VQ
  over the concatenated acoustic (DAC encoder) and semantic (HuBERT) features, so every prefix of
  at least one codebook is a valid, identical-to-direct encoding.
* Operating points: the config's ``target_bandwidths`` (``xcodec@2``), n = bandwidth x 1000 /
  (frame rate x log2 K) codebooks, nominal 50 x n x 10 bits = 0.5, 1, 1.5, 2, 4 kbps.
* Frames: the HuBERT feature extractor over the input padded by half a hop on each side, about
  one per 320 samples; the decoder returns frames x 320 samples (the harness pads or trims).
* Weights: ``hf-audio/xcodec-hubert-librispeech`` (see its model card); code in transformers (Apache 2.0).
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from bench.codecs._hf import HFCodec, HFCodes, Layout
from bench.codecs.base import CodecSpec, OperatingPoint, register_codec
from bench.errors import UserError
from bench.hub import cached_snapshot

#: transformers' defaults for the sub-configs, used where config.json leaves a field out
DEFAULT_DOWNSAMPLING = (8, 5, 4, 2)
DEFAULT_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
DEFAULT_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
DEFAULT_BANDWIDTHS = (0.5, 1.0, 1.5, 2.0, 4.0)


class XcodecCodec(HFCodec):
    """X-codec: operating points are the model's target bandwidths (a number of codebooks each)."""

    name = "xcodec"
    hub_id = "hf-audio/xcodec-hubert-librispeech"
    model_class = "XcodecModel"
    model_type = "xcodec"
    sample_rate_hz = 16_000
    channels = 1

    @property
    def config(self) -> dict[str, Any]:
        """The folder's config.json, checked to be a mono X-codec at 16 kHz (its rate key is ``sample_rate``)."""
        if self._config is None:
            config = json.loads((self.folder / "config.json").read_text())
            found = (config.get("model_type"), config.get("sample_rate", 16_000))
            if found != (self.model_type, self.sample_rate_hz):
                raise UserError(f"{self.folder} holds {found[0]} at {found[1]} Hz; codec {self.name!r} "
                                f"needs {self.model_type} at {self.sample_rate_hz} Hz")
            self._config = config
        return self._config

    @property
    def frame_size(self) -> int:
        """Samples per code frame: the product of the acoustic (DAC) encoder's downsampling ratios."""
        acoustic = self.config.get("acoustic_model_config") or {}
        return math.prod(int(r) for r in acoustic.get("downsampling_ratios", DEFAULT_DOWNSAMPLING))

    @property
    def frame_rate_hz(self) -> float:
        """Code frames per second, ``ceil(rate / hop)`` as transformers computes it (50 for the published model)."""
        return float(math.ceil(self.sample_rate_hz / self.frame_size))

    def _bandwidth_points(self) -> list[tuple[float, int]]:
        """(bandwidth kbps, codebooks) per target bandwidth, with the model's floor(bw / per-codebook kbps) rule."""
        per_codebook = self.bits_per_code * self.frame_rate_hz / 1000
        bandwidths = self.config.get("target_bandwidths") or DEFAULT_BANDWIDTHS
        return [(float(bw), max(1, math.floor(float(bw) / per_codebook))) for bw in bandwidths]

    @property
    def spec(self) -> CodecSpec:
        """CBR points at the config's target bandwidths; nominal kbps = frame rate x n x log2(K)."""
        cfg = self.config
        points = self._bandwidth_points()
        ops = [OperatingPoint(f"{bw:g}", round(self.frame_rate_hz * n * self.bits_per_code / 1000, 4),
                              {"n_codebooks": n, "bandwidth": bw}) for bw, n in points]
        depth = max(n for _, n in points)
        return CodecSpec(
            name=self.name, sample_rate_hz=self.sample_rate_hz, channels=1, operating_points=ops,
            family="xcodec", frame_rate_hz=self.frame_rate_hz, codebook_sizes=[int(cfg["codebook_size"])] * depth,
            licence="code Apache-2.0; weights per the model card", requires=["transformers", "safetensors"],
            description=f"X-codec (HuBERT semantic + DAC acoustic) via transformers, weights {self.hub_id}",
        )

    #: not batched until shown exact (no test compares its batched and unbatched codes; HuBERT sees the whole input)
    batch_exact = False

    def samples_per_frame(self) -> int:
        """The hop (320 samples), for batched coding."""
        return self.frame_size

    def context_seconds(self) -> float:
        """3 s each side: HuBERT attends to its whole input, so windowed codes are approximate (see docs)."""
        return 3.0

    def layout(self, num_samples: int) -> Layout:
        """One chunk; frames from the HuBERT convolutions over the input padded by half a hop each side."""
        semantic = self.config.get("semantic_model_config") or {}
        length = num_samples + 2 * (self.frame_size // 2)
        for kernel, stride in zip(semantic.get("conv_kernel", DEFAULT_CONV_KERNEL),
                                  semantic.get("conv_stride", DEFAULT_CONV_STRIDE), strict=True):
            length = (length - int(kernel)) // int(stride) + 1
        return Layout(1, max(1, length), 0)

    def _bandwidth_for(self, n_codebooks: int) -> float:
        """The target bandwidth that sends exactly ``n_codebooks`` (the model only accepts its own bandwidths)."""
        for bw, n in self._bandwidth_points():
            if n == n_codebooks:
                return bw
        raise ValueError(f"{self.name}: no target bandwidth sends {n_codebooks} codebooks")

    def encode_full(self, wav: torch.Tensor, n_codebooks: int) -> HFCodes:
        """``XcodecModel.encode`` at the bandwidth of ``n`` codebooks: codes ``[B, n, frames]`` as one chunk."""
        codes = self.model.encode(wav, bandwidth=self._bandwidth_for(n_codebooks), return_dict=True).audio_codes
        return HFCodes(codes.unsqueeze(0), None, 0)

    def decode_codes(self, payload: HFCodes) -> torch.Tensor:
        """``XcodecModel.decode`` of the one chunk's codes."""
        return self.model.decode(payload.codes[0], return_dict=True).audio_values


register_codec("xcodec", XcodecCodec, in_all=cached_snapshot(XcodecCodec.hub_id) is not None)
