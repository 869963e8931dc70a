"""Shared base of the published codecs run through ``transformers`` (EnCodec, Mimi).

* Weights: ``NAME`` (the default hub id, from the local Hugging Face cache), ``NAME:PATH`` (a
  ``save_pretrained`` folder) or ``NAME:HUB_ID``; resolved by :mod:`bench.hub`, offline, safetensors
  only. The model is loaded once per process (per folder and device).
* Operating points send the first n codebooks of a residual VQ: the adapter encodes once at full
  depth and slices the prefix (identical codes: a residual stage never depends on later ones).
* Nominal bitrate: frame rate x n x log2(K), K the codebook size.
* Bitstream: the harness header, then (models that normalise chunks, EnCodec 48 kHz) one float32
  scale per chunk and batch item, little endian, then the codes at log2(K) bits each, MSB first, in
  the order chunk, item, codebook, frame, without the zero frames that pad the last chunk. The
  chunk layout and frame counts follow from the sample count in the header.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.codecs.base import BitstreamError, BitstreamHeader, Codec, Encoded, FrameLayout, OperatingPoint
from bench.errors import UserError
from bench.models.bitpack import pack_codes, packed_size, unpack_codes

#: loaded models, one per (class, folder, device) in this process
_MODELS: dict[tuple[str, str, str], torch.nn.Module] = {}


@dataclass(frozen=True)
class Layout:
    """How ``num_samples`` are cut into chunks: count, code frames of a full chunk, padding of the last."""

    n_chunks: int
    frames: int
    last_pad: int


@dataclass
class HFCodes:
    """An HF codec's payload: codes ``[chunks, B, n, frames]`` (int64), scales ``[chunks, B]`` or None."""

    codes: torch.Tensor
    scales: torch.Tensor | None
    last_pad: int = 0

    def prefix(self, n: int) -> "HFCodes":
        """The same codes with only the first ``n`` codebooks (scales do not depend on depth)."""
        return HFCodes(self.codes[:, :, :n].contiguous(), self.scales, self.last_pad)


def load_hf_model(class_name: str, folder: Path, device: torch.device) -> torch.nn.Module:
    """``transformers.<class_name>.from_pretrained(folder)`` (safetensors only, offline), once per process."""
    key = (class_name, str(folder.resolve()), str(device))
    if key not in _MODELS:
        try:
            import transformers
        except ImportError as exc:
            raise UserError(f"{class_name} needs transformers: pip install transformers ({exc})") from exc
        cls = getattr(transformers, class_name)
        model = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        _MODELS[key] = model.to(device).eval()
    return _MODELS[key]


class FolderWeightsCodec(Codec):
    """A codec whose weights are a folder with model.safetensors: its hash and parameter count, once."""

    model: Any = None  # the network, once loaded

    @property
    @abstractmethod
    def folder(self) -> Path:
        """The resolved weights folder (subclasses define it)."""

    @property
    def checkpoint_hash(self) -> str:
        """SHA-256 of the folder's model.safetensors (the weights are part of every cache key)."""
        from bench.hub import weights_sha256

        return weights_sha256(self.folder)

    def num_parameters(self) -> int | None:
        """Parameter count of the loaded network (None before ``load``)."""
        return None if self.model is None else sum(p.numel() for p in self.model.parameters())


class HFCodec(FolderWeightsCodec):
    """A residual-VQ codec from ``transformers``; subclasses give the spec, layout and the model calls."""

    #: the default weights, looked up in the local Hugging Face cache
    hub_id: str = ""
    #: the ``transformers`` class that loads the folder
    model_class: str = ""
    #: the ``model_type`` of the folder's config.json and the rate/channels this adapter is for
    model_type: str = ""
    sample_rate_hz: int = 24_000
    channels: int = 1
    fingerprint_packages = ("numpy", "torch", "transformers", "safetensors")
    model: Any = None  # the network once loaded (a class default keeps it out of fingerprint params)

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint)
        self._folder: Path | None = None
        self._config: dict[str, Any] | None = None

    # --- weights and config -------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The checked weights folder (the user's path or hub id, else the default hub id from the cache)."""
        if self._folder is None:
            from bench.hub import resolve_weights

            self._folder = resolve_weights(self.checkpoint or self.hub_id, self.hub_id)
        return self._folder

    @property
    def config(self) -> dict[str, Any]:
        """The folder's config.json, checked to be the model, rate and channels this adapter codes."""
        if self._config is None:
            config = json.loads((self.folder / "config.json").read_text())
            found = (config.get("model_type"), config.get("sampling_rate"), config.get("audio_channels", 1))
            wanted = (self.model_type, self.sample_rate_hz, self.channels)
            if found != wanted:
                raise UserError(f"{self.folder} holds {found[0]} at {found[1]} Hz, {found[2]} ch; codec {self.name!r} "
                                f"needs {wanted[0]} at {wanted[1]} Hz, {wanted[2]} ch")
            self._config = config
        return self._config

    def _load(self) -> None:
        """Load the network from the folder (shared with every other instance on the same folder and device)."""
        self.model = load_hf_model(self.model_class, self.folder, self.device)

    # --- what subclasses define -----------------------------------------------------------------
    @property
    def bits_per_code(self) -> int:
        """log2 of the codebook size (the codebook sizes of these models are powers of two)."""
        return int(math.log2(int(self.config["codebook_size"])))

    def n_codebooks(self, op: OperatingPoint) -> int:
        """Codebooks an operating point sends."""
        return int(op.params["n_codebooks"])

    def max_codebooks(self) -> int:
        """The full depth, encoded once per item."""
        return max(self.n_codebooks(p) for p in self.spec.operating_points)

    @abstractmethod
    def layout(self, num_samples: int) -> Layout:
        """Chunks and code frames for ``num_samples`` (one chunk unless the subclass chunks)."""

    @abstractmethod
    def encode_full(self, wav: torch.Tensor, n_codebooks: int) -> HFCodes:
        """The model's codes (and scales) of ``wav`` at depth ``n_codebooks``."""

    @abstractmethod
    def decode_codes(self, payload: HFCodes) -> torch.Tensor:
        """The model's reconstruction ``[B, C, T']`` of a payload (T' >= num_samples)."""

    def has_scales(self) -> bool:
        """Whether the payload carries one scale per chunk and item (models that normalise chunks)."""
        return False

    # --- coding ------------------------------------------------------------------------------
    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Codes of ``wav [B, C, T]`` at the point's depth: full depth once per input, then its prefix."""
        op = self.resolve_op(operating_point)
        wav = self.check_wav(wav, self.channels)
        self.load(self.device)
        full = self._full(wav)
        return Encoded(self.name, op.name, self.sample_rate_hz, self.channels, int(wav.shape[-1]),
                       int(wav.shape[0]), full.prefix(self.n_codebooks(op)))

    def _full(self, wav: torch.Tensor) -> HFCodes:
        """The full-depth codes (and scales) of ``wav``, memoized per input: every point slices a prefix."""
        self.load(self.device)
        return self.memoized("full", wav, lambda: self._encode_cpu(wav.to(self.device, torch.float32),
                                                                  self.max_codebooks()))

    # --- batched coding ------------------------------------------------------------------------
    #: whether batched coding was shown to give exactly the codes of coding each item alone (tests/test_batching.py,
    #: CPU); False keeps the codec item by item, since a batch must never change an item's value
    batch_exact: bool = False

    def samples_per_frame(self) -> int | None:
        """Samples per code frame for batched coding; None = not batchable (subclasses that can say it)."""
        return None

    def context_seconds(self) -> float:
        """Context each side of a window of a long item: about the model's receptive field (1 s default)."""
        return 1.0

    def default_frame_layout(self) -> FrameLayout | None:
        """Frames of :meth:`samples_per_frame` counted by :meth:`layout`; None (item by item) for a model that
        chunks itself or whose batched codes are not known to equal its codes alone (:attr:`batch_exact`)."""
        hop = self.samples_per_frame()
        if hop is None or self.has_scales() or not self.batch_exact:
            return None
        return FrameLayout.default(hop, self.sample_rate_hz, lambda _op, n: self._one_chunk(n).frames,
                                   context_s=self.context_seconds())

    def _one_chunk(self, num_samples: int) -> Layout:
        """The layout of ``num_samples``, checked to be one chunk without padding (what batching slices)."""
        layout = self.layout(num_samples)
        if layout.n_chunks != 1 or layout.last_pad:
            raise ValueError(f"{self.name}: {num_samples} samples code as {layout.n_chunks} chunks; "
                             "batched coding slices one")
        return layout

    def encode_group(self, op: OperatingPoint) -> str:
        """Every point slices the one full-depth encode."""
        return "full"

    def encode_shared(self, wav: torch.Tensor, op: OperatingPoint) -> None:
        """The full-depth codes of ``wav`` (memoized)."""
        self._full(self.check_wav(wav, self.channels))

    def split_payload(self, encoded: Encoded, index: int, start: int, stop: int) -> HFCodes:
        """Item ``index``'s codes, frames ``start:stop`` (one-chunk payloads without scales only)."""
        payload: HFCodes = encoded.payload
        self._check_one_chunk(payload)
        return HFCodes(payload.codes[:, index : index + 1, :, start:stop].clone(), None, 0)

    def concat_payloads(self, payloads: list[Any]) -> HFCodes:
        """Consecutive frame ranges of one item's codes joined along the frames."""
        for p in payloads:
            self._check_one_chunk(p)
        return HFCodes(torch.cat([p.codes for p in payloads], dim=-1), None, 0)

    def merge_payloads(self, payloads: list[Any], frames: int) -> HFCodes:
        """Batch-of-one payloads stacked into one batch, each padded with code 0 to ``frames``."""
        padded = []
        for p in payloads:
            self._check_one_chunk(p)
            short = frames - int(p.codes.shape[-1])
            if short < 0:
                raise ValueError(f"{self.name}: a payload of {p.codes.shape[-1]} frames does not fit {frames}")
            padded.append(torch.nn.functional.pad(p.codes, (0, short)) if short else p.codes)
        return HFCodes(torch.cat(padded, dim=1), None, 0)

    def _check_one_chunk(self, payload: HFCodes) -> None:
        """Refuse a payload that batching cannot slice (several chunks, scales, end padding)."""
        if payload.codes.shape[0] != 1 or payload.scales is not None or payload.last_pad:
            raise ValueError(f"{self.name}: batched coding slices one-chunk payloads without scales")

    def encode_direct(self, wav: torch.Tensor, n_codebooks: int) -> HFCodes:
        """Codes at exactly ``n_codebooks`` without the prefix shortcut (tests compare the two)."""
        self.load(self.device)
        return self._encode_cpu(wav.to(self.device, torch.float32), n_codebooks)

    def _encode_cpu(self, x: torch.Tensor, n_codebooks: int) -> HFCodes:
        """``encode_full`` without autograd, moved to the CPU, checked against the expected layout."""
        with torch.inference_mode():
            out = self.encode_full(x, n_codebooks)
        layout = self.layout(int(x.shape[-1]))
        expected = (layout.n_chunks, int(x.shape[0]), n_codebooks, layout.frames)
        if tuple(out.codes.shape) != expected or out.last_pad != layout.last_pad:
            raise RuntimeError(f"{self.name}: the model returned codes {tuple(out.codes.shape)} (last pad "
                               f"{out.last_pad}); the bitstream layout expects {expected} (last pad {layout.last_pad})")
        scales = None if out.scales is None else out.scales.float().cpu()
        return HFCodes(out.codes.long().cpu(), scales, out.last_pad)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Audio ``[B, C, num_samples]`` (float32, CPU) from the payload."""
        self.load(self.device)
        payload: HFCodes = encoded.payload
        moved = HFCodes(payload.codes.to(self.device),
                        None if payload.scales is None else payload.scales.to(self.device), payload.last_pad)
        with torch.inference_mode():
            audio = self.decode_codes(moved)
        return self.fit_decoded(audio, encoded.num_samples)

    # --- bitstream ---------------------------------------------------------------------------
    def pack_payload(self, encoded: Encoded) -> bytes:
        """Scales (float32, if any), then the codes at log2(K) bits without the last chunk's padding."""
        payload: HFCodes = encoded.payload
        layout = self.layout(encoded.num_samples)
        n = self.n_codebooks(self.resolve_op(encoded.operating_point))
        expected = (layout.n_chunks, encoded.batch_size, n, layout.frames)
        if tuple(payload.codes.shape) != expected:
            raise ValueError(f"{self.name} codes have shape {tuple(payload.codes.shape)}, expected {expected}")
        codes = payload.codes.numpy()
        body = np.concatenate([codes[:-1].reshape(-1), codes[-1][..., : layout.frames - layout.last_pad].reshape(-1)])
        head = b""
        if self.has_scales():
            if payload.scales is None:
                raise ValueError(f"{self.name} payload has no scales")
            head = np.ascontiguousarray(payload.scales.numpy().reshape(-1), dtype="<f4").tobytes()
        return head + pack_codes(body, self.bits_per_code)

    def _check_header(self, header: BitstreamHeader) -> OperatingPoint:
        """The header's operating point, after checking its rate and channels match this codec."""
        try:
            op = self.resolve_op(header.operating_point)
        except KeyError as exc:
            raise BitstreamError(f"{self.name} bitstream names an unknown operating point "
                                 f"{header.operating_point!r}") from exc
        if header.num_channels != self.channels or header.sample_rate_hz != self.sample_rate_hz:
            raise BitstreamError(f"{self.name} bitstream for {header.num_channels} ch at {header.sample_rate_hz} Hz; "
                                 f"this codec is {self.channels} ch at {self.sample_rate_hz} Hz")
        return op

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> HFCodes:
        """Inverse of :meth:`pack_payload`; the padding frames of the last chunk come back as zeros."""
        n = self.n_codebooks(self._check_header(header))
        layout = self.layout(header.num_samples)
        b, bits = header.batch_size, self.bits_per_code
        n_scales = layout.n_chunks * b if self.has_scales() else 0
        full = (layout.n_chunks - 1) * b * n * layout.frames
        count = full + b * n * (layout.frames - layout.last_pad)
        expected = 4 * n_scales + packed_size(count, bits)
        if len(body) != expected:
            raise BitstreamError(f"{self.name} payload has {len(body)} bytes, expected {expected} "
                                 f"(truncated or trailing bytes)")
        scales = None
        if n_scales:
            scales = torch.from_numpy(np.frombuffer(body[: 4 * n_scales], dtype="<f4").astype(np.float32)
                                      .reshape(layout.n_chunks, b))
        flat = unpack_codes(body[4 * n_scales:], bits, count)
        codes = np.zeros((layout.n_chunks, b, n, layout.frames), dtype=np.int64)
        codes[:-1] = flat[:full].reshape(layout.n_chunks - 1, b, n, layout.frames)
        codes[-1, ..., : layout.frames - layout.last_pad] = flat[full:].reshape(b, n, -1)
        return HFCodes(torch.from_numpy(codes), scales, layout.last_pad)
