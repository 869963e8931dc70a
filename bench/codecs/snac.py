"""SNAC (Multi-Scale Neural Audio Codec, Siuzdak et al.) through the ``snac`` package (``pip install snac``).

* Models: ``snac`` (``hubertsiuzdak/snac_24khz``, speech), ``snac32`` (``snac_32khz``) and ``snac44``
  (``snac_44khz``, music and sound effects); mono.
* Codes: a residual VQ whose levels run at different temporal resolutions (level l at frame rate
  ``sample_rate / hop / vq_strides[l]``). One operating point per model, ``full`` (every level).
* Nominal bitrate: sum over levels of (frame rate of the level) x log2(codebook size).
* Weights: a folder with ``config.json`` + ``model.safetensors`` (``snac:FOLDER``). The hub repos ship
  only ``pytorch_model.bin``, a pickle, which bench never loads as such: :func:`convert_snac` turns a
  downloaded folder into the safetensors layout once (PyTorch's weights-only loader, the allowed route
  for an official release). A bare ``snac`` without a folder is unavailable and says how to convert.
* Bitstream: the harness header, then each level's codes at log2(K) bits, MSB first, in the order
  level, batch item, frame; the frame counts follow from the sample count in the header (the input is
  padded to a multiple of ``hop x lcm(vq_strides[0], attn_window_size)`` as ``SNAC.preprocess`` does).
* Decoding: SNAC's decoder adds noise (``NoiseBlock``); bench draws it from a fixed seed in a forked
  RNG, so a decode is deterministic and equals ``SNAC.decode`` after ``torch.manual_seed(NOISE_SEED)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.codecs._hf import FolderWeightsCodec
from bench.codecs.base import (
    BitstreamError,
    BitstreamHeader,
    CodecSpec,
    Encoded,
    OperatingPoint,
    register_codec,
)
from bench.errors import UserError
from bench.models.bitpack import pack_codes, packed_size, unpack_codes

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: the seed of the decoder's noise (see the module docstring)
NOISE_SEED = 0


def _require_snac() -> Any:
    """The ``snac`` module, or a one-line UserError naming the install command."""
    try:
        import snac
    except ImportError as exc:
        raise UserError(f"SNAC needs the snac package: pip install snac ({exc})") from exc
    return snac


def convert_snac(source: str | Path, out: str | Path) -> Path:
    """Write ``out/config.json`` + ``out/model.safetensors`` from a SNAC release folder (``config.json`` + ``pytorch_model.bin``).

    The release file is read with ``torch.load(weights_only=True)`` (tensors only, no code runs),
    loaded into ``snac.SNAC`` to check it fits the config, and saved as safetensors. Get the release
    folder with ``huggingface-cli download hubertsiuzdak/snac_24khz --local-dir SRC``.
    """
    from safetensors.torch import save_file

    src, dst = Path(source), Path(out)
    for name in (CONFIG_FILE, "pytorch_model.bin"):
        if not (src / name).is_file():
            raise UserError(f"{src} has no {name}: not a SNAC release folder")
    config = json.loads((src / CONFIG_FILE).read_text())
    model = _require_snac().SNAC(**config)
    model.load_state_dict(torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True))
    dst.mkdir(parents=True, exist_ok=True)
    (dst / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(dst / WEIGHTS_FILE))
    return dst


class SNACCodec(FolderWeightsCodec):
    """SNAC 24 kHz (speech): three levels at 12, 23 and 47 Hz, 4096-entry codebooks (0.98 kbps)."""

    name = "snac"
    #: the official release these weights come from (converted with :func:`convert_snac`)
    release: str = "hubertsiuzdak/snac_24khz"
    sample_rate_hz: int = 24_000
    channels = 1
    fingerprint_packages = ("numpy", "torch", "snac", "safetensors")
    model: Any = None  # the network once loaded (a class default keeps it out of fingerprint params)

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint)
        self._config: dict[str, Any] | None = None

    # --- weights and config -------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The weights folder given as ``NAME:FOLDER``, checked to hold a config and safetensors weights."""
        if not self.checkpoint:
            raise UserError(f"no weights folder: {self.release} ships only a pickle, which bench never loads; "
                            f"convert it once with bench.codecs.snac.convert_snac(SRC, DST), then {self.name}:DST")
        folder = Path(self.checkpoint).expanduser()
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise UserError(f"{folder} needs {CONFIG_FILE} and {WEIGHTS_FILE} (convert a release folder with "
                            f"bench.codecs.snac.convert_snac)")
        return folder

    @property
    def config(self) -> dict[str, Any]:
        """The folder's config.json (``snac.SNAC`` keyword arguments), checked to be at this codec's rate."""
        if self._config is None:
            config = json.loads((self.folder / CONFIG_FILE).read_text())
            if int(config.get("sampling_rate", 44_100)) != self.sample_rate_hz:
                raise UserError(f"{self.folder} holds SNAC at {config.get('sampling_rate', 44_100)} Hz; codec "
                                f"{self.name!r} is {self.sample_rate_hz} Hz")
            self._config = config
        return self._config

    @property
    def hop_length(self) -> int:
        """Samples per frame of the finest level (product of the encoder rates)."""
        return int(np.prod(self.config.get("encoder_rates", [3, 3, 7, 7])))

    @property
    def vq_strides(self) -> list[int]:
        """Temporal stride of each level relative to the finest frame rate."""
        return [int(s) for s in self.config.get("vq_strides", [8, 4, 2, 1])]

    @property
    def bits_per_code(self) -> int:
        """log2 of the codebook size (a power of two in every release)."""
        return int(math.log2(int(self.config.get("codebook_size", 4096))))

    @property
    def spec(self) -> CodecSpec:
        """One operating point, ``full``: every level; nominal kbps from the config."""
        frame_rate = self.sample_rate_hz / self.hop_length
        kbps = sum(frame_rate / s for s in self.vq_strides) * self.bits_per_code / 1000
        point = OperatingPoint("full", round(kbps, 4), {"n_levels": len(self.vq_strides)})
        return CodecSpec(
            name=self.name, sample_rate_hz=self.sample_rate_hz, channels=self.channels, operating_points=[point],
            family="snac", frame_rate_hz=frame_rate, codebook_sizes=[2**self.bits_per_code] * len(self.vq_strides),
            licence="MIT", requires=["snac", "safetensors"],
            description=f"SNAC {self.sample_rate_hz / 1000:g} kHz (multi-scale RVQ) via snac, release {self.release}",
        )

    def _load(self) -> None:
        """Build ``snac.SNAC`` from the config and load the safetensors weights (strict)."""
        from safetensors.torch import load_file

        model = _require_snac().SNAC(**self.config)
        model.load_state_dict(load_file(str(self.folder / WEIGHTS_FILE)))
        self.model = model.to(self.device).eval()

    # --- layout ----------------------------------------------------------------------------------
    def level_frames(self, num_samples: int) -> list[int]:
        """Code frames of each level for ``num_samples`` input samples (after SNAC's padding)."""
        lcm = math.lcm(self.vq_strides[0], self.config.get("attn_window_size") or 1)
        pad_to = self.hop_length * lcm
        frames = math.ceil(max(1, num_samples) / pad_to) * pad_to // self.hop_length
        return [frames // s for s in self.vq_strides]

    # --- coding ----------------------------------------------------------------------------------
    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """``SNAC.encode`` of ``wav [B, 1, T]``: one int64 code tensor ``[B, frames_l]`` per level."""
        op = self.resolve_op(operating_point)
        wav = self.check_wav(wav, self.channels)
        self.load(self.device)
        with torch.inference_mode():
            codes = self.model.encode(wav.to(self.device, torch.float32))
        expected = self.level_frames(int(wav.shape[-1]))
        if [int(c.shape[-1]) for c in codes] != expected:
            raise RuntimeError(f"{self.name}: SNAC returned {[tuple(c.shape) for c in codes]} frames; "
                               f"the bitstream layout expects {expected}")
        payload = [c.long().cpu() for c in codes]
        return Encoded(self.name, op.name, self.sample_rate_hz, self.channels, int(wav.shape[-1]),
                       int(wav.shape[0]), payload)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Audio ``[B, 1, num_samples]`` (float32, CPU); the decoder's noise comes from ``NOISE_SEED``."""
        self.load(self.device)
        codes = [c.to(self.device) for c in encoded.payload]
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(NOISE_SEED)
            audio = self.model.decode(codes)
        return self.fit_decoded(audio, encoded.num_samples)

    # --- bitstream -------------------------------------------------------------------------------
    def pack_payload(self, encoded: Encoded) -> bytes:
        """Every level's codes at log2(K) bits, level by level."""
        expected = [(encoded.batch_size, n) for n in self.level_frames(encoded.num_samples)]
        shapes = [tuple(c.shape) for c in encoded.payload]
        if shapes != expected:
            raise ValueError(f"{self.name} codes have shapes {shapes}, expected {expected}")
        flat = np.concatenate([c.numpy().reshape(-1) for c in encoded.payload])
        return pack_codes(flat, self.bits_per_code)

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> list[torch.Tensor]:
        """Inverse of :meth:`pack_payload`; a wrong length or another rate raises BitstreamError."""
        if header.num_channels != self.channels or header.sample_rate_hz != self.sample_rate_hz:
            raise BitstreamError(f"{self.name} bitstream for {header.num_channels} ch at {header.sample_rate_hz} Hz; "
                                 f"this codec is {self.channels} ch at {self.sample_rate_hz} Hz")
        frames = self.level_frames(header.num_samples)
        count = header.batch_size * sum(frames)
        if len(body) != packed_size(count, self.bits_per_code):
            raise BitstreamError(f"{self.name} payload has {len(body)} bytes, expected "
                                 f"{packed_size(count, self.bits_per_code)} (truncated or trailing bytes)")
        flat = unpack_codes(body, self.bits_per_code, count).astype(np.int64)
        out, pos = [], 0
        for n in frames:
            size = header.batch_size * n
            out.append(torch.from_numpy(flat[pos: pos + size].reshape(header.batch_size, n).copy()))
            pos += size
        return out


class SNAC32Codec(SNACCodec):
    """SNAC 32 kHz (music, sound effects): four levels, 4096-entry codebooks (1.9 kbps)."""

    name = "snac32"
    release = "hubertsiuzdak/snac_32khz"
    sample_rate_hz = 32_000


class SNAC44Codec(SNACCodec):
    """SNAC 44.1 kHz (music, sound effects): four levels, 4096-entry codebooks (2.6 kbps)."""

    name = "snac44"
    release = "hubertsiuzdak/snac_44khz"
    sample_rate_hz = 44_100


register_codec("snac", SNACCodec)
register_codec("snac32", SNAC32Codec)
register_codec("snac44", SNAC44Codec)
