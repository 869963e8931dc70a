"""EnCodec (Défossez et al., 2022, "High Fidelity Neural Audio Compression") through ``transformers``.

* ``encodec``: 24 kHz mono, 75 Hz frames, K = 1024; 1.5, 3, 6, 12, 24 kbps (2, 4, 8, 16, 32 codebooks).
  Weights: ``facebook/encodec_24khz``.
* ``encodec48``: 48 kHz stereo (one code stream for both channels), 150 Hz frames, K = 1024;
  3, 6, 12, 24 kbps. Weights: ``facebook/encodec_48khz``. The model codes 1 s chunks that overlap
  by 1 % and normalises each chunk by its RMS: the bitstream carries that scale (float32 per chunk
  and item, as the decoder multiplies by it), and both the scales and the overlap count in the
  measured kbps (about 1 % over nominal).
* Nominal bitrate: frame rate x n x log2(K) = the bandwidth the model is named by.
* Licence: code MIT (facebookresearch/encodec); the published weights are CC-BY-NC 4.0.
"""

from __future__ import annotations

import math

import torch

from bench.codecs._hf import HFCodec, HFCodes, Layout
from bench.codecs.base import CodecSpec, OperatingPoint, register_codec
from bench.hub import cached_snapshot


class EncodecCodec(HFCodec):
    """EnCodec 24 kHz: operating points are the model's target bandwidths (kbps)."""

    name = "encodec"
    hub_id = "facebook/encodec_24khz"
    model_class = "EncodecModel"
    model_type = "encodec"
    sample_rate_hz = 24_000
    channels = 1

    @property
    def hop_length(self) -> int:
        """Samples per code frame: the product of the decoder's upsampling ratios."""
        return math.prod(int(r) for r in self.config["upsampling_ratios"])

    @property
    def frame_rate_hz(self) -> float:
        """Code frames per second, ceil(rate / hop) as transformers computes it."""
        return float(math.ceil(self.sample_rate_hz / self.hop_length))

    @property
    def spec(self) -> CodecSpec:
        """One CBR point per target bandwidth of the config (reads config.json, not the weights)."""
        cfg = self.config
        bits = self.bits_per_code
        ops = []
        for bandwidth in cfg["target_bandwidths"]:
            n = max(1, math.floor(bandwidth * 1000 / (self.frame_rate_hz * bits)))
            ops.append(OperatingPoint(f"{bandwidth:g}", round(self.frame_rate_hz * n * bits / 1000, 4),
                                      {"bandwidth_kbps": float(bandwidth), "n_codebooks": n}))
        return CodecSpec(
            name=self.name, sample_rate_hz=self.sample_rate_hz, channels=self.channels, operating_points=ops,
            family="encodec", frame_rate_hz=self.frame_rate_hz,
            codebook_sizes=[int(cfg["codebook_size"])] * max(p.params["n_codebooks"] for p in ops),
            licence="code MIT; weights CC-BY-NC-4.0", requires=["transformers", "safetensors"],
            description=f"EnCodec {self.sample_rate_hz // 1000} kHz (Meta) via transformers, weights {self.hub_id}",
        )

    def _full_bandwidth(self, n_codebooks: int) -> float:
        """The target bandwidth whose depth is ``n_codebooks`` (transformers asks for a bandwidth)."""
        for point in self.spec.operating_points:
            if point.params["n_codebooks"] == n_codebooks:
                return float(point.params["bandwidth_kbps"])
        raise ValueError(f"{self.name} has no bandwidth with {n_codebooks} codebooks")

    batch_exact = True  # batched == alone, bit for bit (tests/test_batching.py)

    def samples_per_frame(self) -> int | None:
        """The hop, for batched coding; None for a model that codes its own chunks (the 48 kHz one)."""
        return None if self.config.get("chunk_length_s") is not None else self.hop_length

    def has_scales(self) -> bool:
        """Models with ``normalize`` (the 48 kHz one) rescale each chunk: the scale is sent."""
        return bool(self.config.get("normalize"))

    def layout(self, num_samples: int) -> Layout:
        """Chunks of ``chunk_length_s`` at a stride of (1 - overlap) x chunk; one chunk when unset."""
        cfg = self.config
        frames = lambda length: max(1, math.ceil(length / self.hop_length))  # noqa: E731 - one-line helper
        if cfg.get("chunk_length_s") is None:
            return Layout(1, frames(num_samples), 0)
        chunk = int(cfg["chunk_length_s"] * self.sample_rate_hz)
        stride = max(1, int((1.0 - cfg["overlap"]) * chunk)) if cfg.get("overlap") is not None else chunk
        offsets = range(0, num_samples, stride)
        first = frames(min(chunk, num_samples))
        last = frames(min(chunk, num_samples - offsets[-1]))
        return Layout(len(offsets), first, first - last)

    def encode_full(self, wav: torch.Tensor, n_codebooks: int) -> HFCodes:
        """``EncodecModel.encode`` at the bandwidth of ``n_codebooks``: codes, scales, last-chunk padding."""
        codes, scales, last_pad = self.model.encode(wav, bandwidth=self._full_bandwidth(n_codebooks),
                                                    return_dict=False)
        stacked = None if scales[0] is None else torch.stack([s.reshape(-1) for s in scales])
        return HFCodes(codes, stacked, int(last_pad))

    def decode_codes(self, payload: HFCodes) -> torch.Tensor:
        """``EncodecModel.decode`` of the codes with their scales (None for the 24 kHz model)."""
        scales = [None] * payload.codes.shape[0] if payload.scales is None else [s.view(-1, 1) for s in payload.scales]
        return self.model.decode(payload.codes, scales, last_frame_pad_length=payload.last_pad,
                                 return_dict=False)[0]


class Encodec48Codec(EncodecCodec):
    """EnCodec 48 kHz stereo: chunked and normalised; the scales travel in the bitstream."""

    name = "encodec48"
    hub_id = "facebook/encodec_48khz"
    sample_rate_hz = 48_000
    channels = 2


register_codec("encodec", EncodecCodec, in_all=cached_snapshot(EncodecCodec.hub_id) is not None)
register_codec("encodec48", Encodec48Codec, in_all=cached_snapshot(Encodec48Codec.hub_id) is not None)
