"""Improved RVQGAN (DAC), trained in this repository, behind the Codec interface.

* Weights: a bench checkpoint (``NAME.safetensors`` + ``NAME.json`` card, see
  ``bench.models.checkpoint``). By default the shipped ``small`` model in
  ``bench/codecs/checkpoints/dac_small.safetensors``; ``--codecs dac:PATH`` loads any other checkpoint
  trained with ``bench train dac``. A missing checkpoint is an error, never random weights.
* Operating points: the number of codebooks, ``1..N`` (named ``"1"`` .. ``"N"``: ``dac@4``). Exactly
  the first n codebooks are computed and sent.
* Nominal bitrate: frame rate x n x log2(K) (0.75 kbps per codebook for the 24 kHz, 75 Hz, K = 1024 model).
* Bitstream: the harness header, then the codes ``[B, n, frames]`` at log2(K) bits each, MSB first,
  C order; frames = ceil(num_samples / hop). Nothing else: n comes from the operating point in the
  header and the frame count from the sample count.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.codecs._checkpointed import SINGLE, CheckpointCodec
from bench.codecs.base import (
    BitstreamError,
    BitstreamHeader,
    CodecSpec,
    Encoded,
    FrameLayout,
    OperatingPoint,
    register_codec,
)
from bench.models.bitpack import pack_codes, packed_size, unpack_codes

if TYPE_CHECKING:
    from bench.models.dac_model import DAC, DACConfig

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "dac_small.safetensors"


class DACCodec(CheckpointCodec):
    """DAC from a bench checkpoint; operating points = number of codebooks."""

    name = "dac"
    model: DAC | None  # the network, once loaded

    @property
    def default_checkpoint(self) -> Path:
        """The shipped ``small`` model, used when no checkpoint is given."""
        return DEFAULT_CHECKPOINT  # read at call time, so a patched module default is honoured

    # --- published weights: a Hugging Face folder or hub id (transformers' DacModel layout) -----------
    def hf_folder(self) -> Path | None:
        """The weights folder when the checkpoint is a Hugging Face model (a folder with config.json, or a hub id).

        A hub id is resolved from the local Hugging Face cache only (``bench weights fetch`` downloads).
        """
        from bench.hub import is_hub_id, resolve_weights

        if not self.checkpoint:
            return None
        path = Path(self.checkpoint).expanduser()
        if path.is_dir() or (not path.exists() and is_hub_id(self.checkpoint) and not self.checkpoint.endswith(".safetensors")):
            return resolve_weights(self.checkpoint, default_hub_id="descript/dac_44khz")
        return None

    @property
    def cards(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        """The checkpoint's card; for published weights one is made from config.json (what the card would say)."""
        folder = self.hf_folder()
        if folder is None:
            return super().cards
        if self._cards is None:
            self._cards = {SINGLE: (folder / "model.safetensors", _hf_card(folder))}
        return self._cards

    def _load(self) -> None:
        """Our DAC with the published weights mapped onto it (bench.models.dac_convert), or a bench checkpoint."""
        folder = self.hf_folder()
        if folder is None:
            super()._load()
            return
        from bench.models.dac_convert import load_hf_folder

        self.model = load_hf_folder(folder).eval().to(self.device)

    def build_network(self, config: DACConfig) -> DAC:
        """A DAC network of the card's config (weights are loaded by the base class)."""
        from bench.models.dac_model import DAC

        return DAC(config)

    def network(self) -> DAC:
        """The network, loaded on first use."""
        from bench.models.dac_model import DAC

        return self._network_as(DAC)

    def config_from_dict(self, config: dict[str, Any]) -> DACConfig:
        """The :class:`~bench.models.dac_model.DACConfig` recorded in the card."""
        from bench.models.dac_model import DACConfig

        return DACConfig.from_dict(config)

    @property
    def spec(self) -> CodecSpec:
        """One CBR operating point per codebook count 1..N, from the card (no weights read)."""
        cfg = self.config
        card = self.card
        ops = [OperatingPoint(str(n), round(cfg.kbps(n), 4), {"n_codebooks": n})
               for n in range(1, cfg.n_codebooks + 1)]
        training = card.get("training", {})
        return CodecSpec(
            name=self.name,
            sample_rate_hz=cfg.sample_rate_hz,
            channels=1,
            operating_points=ops,
            family="dac",
            frame_rate_hz=cfg.frame_rate_hz,
            codebook_sizes=[cfg.codebook_size] * cfg.n_codebooks,
            licence=card.get("licence", ""),
            requires=["torch", "safetensors"],
            description=(f"Improved RVQGAN ({card.get('name', 'dac')}), trained here: "
                         f"{training.get('steps', '?')} steps on {training.get('device', '?')}"),
            sweep=_sweep([p.name for p in ops]),
        )

    def _n_codebooks(self, op: OperatingPoint) -> int:
        """Codebooks an operating point sends."""
        return int(op.params.get("n_codebooks", op.name))

    def _full_codes(self, wav: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, N, frames]`` at full depth, memoized per input (every point slices a prefix of them)."""
        model = self.network()
        return self.memoized("full", wav, lambda: model.encode(wav.to(self.device, torch.float32),
                                                               self.config.n_codebooks))

    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Codes ``[B, n, frames]`` (int64) of mono ``wav [B, 1, T]``: full depth once, then the first n."""
        op = self.resolve_op(operating_point)
        wav = self.check_wav(wav, 1)
        codes = self._full_codes(wav)[:, : self._n_codebooks(op)]
        return Encoded(self.name, op.name, self.config.sample_rate_hz, 1, int(wav.shape[-1]), int(wav.shape[0]),
                       codes.cpu())

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Audio ``[B, 1, num_samples]`` (float32, CPU) from the codes payload."""
        model = self.network()
        codes = torch.as_tensor(encoded.payload, dtype=torch.long)
        audio = model.decode(codes.to(self.device), encoded.num_samples)
        return audio.float().cpu()

    # --- batched coding ------------------------------------------------------------------------
    def default_frame_layout(self) -> FrameLayout:
        """Frames of ``hop`` samples (ceil(T / hop)); 1 s padding steps, 30 s windows with 1 s context."""
        cfg = self.config
        return FrameLayout.default(cfg.hop_length, cfg.sample_rate_hz, lambda _op, n: self._frames(n))

    def encode_group(self, op: OperatingPoint) -> str:
        """Every point slices the one full-depth encode."""
        return "full"

    def encode_shared(self, wav: torch.Tensor, op: OperatingPoint) -> None:
        """The full-depth codes of ``wav`` (memoized)."""
        self._full_codes(self.check_wav(wav, 1))

    # --- bitstream -------------------------------------------------------------------------
    def _frames(self, num_samples: int) -> int:
        """Code frames for ``num_samples``: ceil(num_samples / hop), at least 1."""
        return max(1, math.ceil(num_samples / self.config.hop_length))

    def pack_payload(self, encoded: Encoded) -> bytes:
        """The codes at log2(K) bits each, MSB first, C order; a shape that does not fit the header raises."""
        codes = np.asarray(torch.as_tensor(encoded.payload).cpu().numpy(), dtype=np.int64)
        n = self._n_codebooks(self.resolve_op(encoded.operating_point))
        expected = (encoded.batch_size, n, self._frames(encoded.num_samples))
        if codes.shape != expected:
            raise ValueError(f"dac codes have shape {codes.shape}, expected {expected}")
        return pack_codes(codes, self.config.bits_per_code)

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> torch.Tensor:
        """Codes ``[B, n, frames]`` (int64) from the body; n from the header's operating point."""
        try:
            op = self.resolve_op(header.operating_point)
        except KeyError as exc:
            raise BitstreamError(f"dac bitstream names an unknown operating point {header.operating_point!r}") from exc
        if header.num_channels != 1 or header.sample_rate_hz != self.config.sample_rate_hz:
            raise BitstreamError(f"dac bitstream for {header.num_channels} ch at {header.sample_rate_hz} Hz does "
                                 f"not match this checkpoint (1 ch at {self.config.sample_rate_hz} Hz)")
        shape = (header.batch_size, self._n_codebooks(op), self._frames(header.num_samples))
        count = int(np.prod(shape))
        bits = self.config.bits_per_code
        if len(body) != packed_size(count, bits):
            raise BitstreamError(f"dac payload has {len(body)} bytes, expected {packed_size(count, bits)} "
                                 f"for codes {shape} at {bits} bits (truncated or trailing bytes)")
        return torch.from_numpy(unpack_codes(body, bits, count).reshape(shape))


register_codec("dac", DACCodec)


def _hf_card(folder: Path) -> dict[str, Any]:
    """A bench card for a Hugging Face DAC folder: its config mapped to ours, the weights' sha256, the source."""
    import json

    from bench.hub import weights_sha256
    from bench.models.dac_convert import config_from_hf

    hf_config = json.loads((folder / "config.json").read_text())
    config = config_from_hf(hf_config)
    return {"model": "dac", "name": f"published:{folder.name}", "config": config.to_dict(),
            "weights_sha256": weights_sha256(folder), "licence": "MIT (descript-audio-codec weights)",
            "source": {"format": "transformers DacModel folder", "folder": str(folder)},
            "training": {"steps": "official release", "device": "see the release"}}


def _sweep(names: list[str]) -> list[str]:
    """Default R-D sweep: 1, 2, 4, ... codebooks and the full depth (``dac@*`` gives every count)."""
    n = len(names)
    counts = sorted({c for c in (1 << k for k in range(n.bit_length())) if c <= n} | {n})
    return [names[c - 1] for c in counts]
