"""EuleroDec (complex-valued RVQ-VAE on the STFT, arXiv 2601.17517), trained here, behind the Codec interface.

* Weights: bench checkpoints (``NAME.safetensors`` + ``NAME.json``, see ``bench.models.checkpoint``).
  Plain ``eulerodec`` loads the two shipped models, ``bench/codecs/checkpoints/eulerodec_small6``
  (8x time compression, 46.875 frames/s) and ``eulerodec_small12`` (4x, 93.75 frames/s);
  ``--codecs eulerodec:PATH`` loads any one checkpoint written by ``bench train eulerodec``.
  A missing checkpoint is an error, never random weights.
* Operating points: per model, the full 12-codebook depth named after its nominal rate (``"6k"``:
  6.1875 kbps, ``"12k"``: 12.375 kbps) and RVQ prefixes ``"6k-n8"``, ``"6k-n4"``, ``"6k-n2"`` ...
  (the first n codebooks only: extra points on the rate-distortion curve).
* Nominal bitrate: frame rate x n x 11 bits (2048-entry codebooks).
* Bitstream: the harness header, then codes ``[B, n, frames]`` at 11 bits each, MSB first, C order.
  n comes from the operating point in the header and the frame count from the sample count
  (frames = ceil((num_samples + 256) / samples_per_frame)).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from bench.codecs._checkpointed import CheckpointCodec
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
    from bench.models.eulerodec_model import EuleroDec

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = ("eulerodec_small6", "eulerodec_small12")
PREFIX_DEPTHS = (8, 4, 2)  # RVQ prefixes offered besides the full depth


def model_label(nominal_kbps: float) -> str:
    """Operating-point prefix of a model: its full-depth nominal rate in whole kbps ("6k", "12k")."""
    return f"{int(nominal_kbps)}k"


class EuleroDecCodec(CheckpointCodec):
    """One or more EuleroDec checkpoints (a set keyed by rate label); operating points = (model, codebooks)."""

    name = "eulerodec"
    config_hint = "small6"

    @property
    def default_checkpoints(self) -> tuple[Path, ...]:
        """The shipped models (read at call time, so a patched module default is honoured)."""
        return tuple(CHECKPOINT_DIR / f"{n}.safetensors" for n in SHIPPED)

    def config_from_dict(self, config: dict[str, Any]) -> Any:
        """An :class:`~bench.models.eulerodec_model.EuleroDecConfig` from a card."""
        from bench.models.eulerodec_model import EuleroDecConfig

        return EuleroDecConfig.from_dict(config)

    def label_of(self, card: dict[str, Any]) -> str:
        """The model's rate label ("6k", "12k"), the prefix of its operating points."""
        return model_label(self.config_from_dict(card["config"]).nominal_kbps())

    def network(self, label: str) -> "EuleroDec":
        """The loaded network of model ``label``."""
        return cast("EuleroDec", self.models[label])

    @property
    def spec(self) -> CodecSpec:
        """Every model's full depth and RVQ prefixes, sorted by nominal rate."""
        ops, sizes, rates = [], [], set()
        for label in self.cards:
            cfg = self.config_of(label)
            rates.add(cfg.frame_rate_hz)
            sizes.append(cfg.codebook_size)
            depths = [cfg.num_quantizers] + [n for n in PREFIX_DEPTHS if n < cfg.num_quantizers]
            for n in depths:
                name = label if n == cfg.num_quantizers else f"{label}-n{n}"
                ops.append(OperatingPoint(name, round(cfg.nominal_kbps(n), 4),
                                          {"model": label, "n_codebooks": n, "frame_rate_hz": cfg.frame_rate_hz}))
        ops.sort(key=lambda p: p.nominal_kbps)
        desc = "; ".join(f"{label}: {card.get('name', '?')}, {card.get('training', {}).get('steps', '?')} steps"
                         for label, (_, card) in self.cards.items())
        first = self.config_of(next(iter(self.cards)))
        return CodecSpec(
            name=self.name,
            sample_rate_hz=first.sample_rate_hz,
            channels=1,
            operating_points=ops,
            family="eulerodec",
            frame_rate_hz=rates.pop() if len(rates) == 1 else None,
            codebook_sizes=sorted(set(sizes)),
            licence="weights: the project's own work (see each card for its training data licences)",
            requires=["torch", "safetensors"],
            description=f"EuleroDec complex-valued RVQ-VAE, trained here without GANs ({desc})",
            # default sweep: each model at full depth plus one 4-codebook prefix; eulerodec@* for all
            sweep=[p.name for p in ops if "-" not in p.name or p.name.endswith("-n4")],
        )

    def num_parameters(self) -> int | None:
        """The largest parameter count the cards record (None when none does)."""
        nums = [card.get("num_parameters") for _, card in self.cards.values()]
        return max(n for n in nums if n is not None) if any(n is not None for n in nums) else None

    def _load(self) -> None:
        """Build every network of the set from its checkpoint, in eval mode on the codec's device."""
        from bench.models.checkpoint import CheckpointError, load_checkpoint
        from bench.models.eulerodec_model import EuleroDec, load_model_state

        for label, (path, _) in self.cards.items():
            tensors, _ = load_checkpoint(path, model="eulerodec")
            model = EuleroDec(self.config_of(label))
            try:
                load_model_state(model, tensors)
            except ValueError as exc:
                raise CheckpointError(f"{path}: {exc}") from exc
            self.models[label] = model.eval().to(self.device)

    # --- coding ----------------------------------------------------------------------------
    def _model_and_n(self, op: OperatingPoint) -> tuple[str, int]:
        """(model label, number of codebooks) of an operating point."""
        return str(op.params["model"]), int(op.params["n_codebooks"])

    def _full_codes(self, wav: torch.Tensor, label: str) -> torch.Tensor:
        """Codes ``[B, 12, frames]`` of model ``label`` at full depth, memoized per input and model."""
        if not self._loaded:
            self.load(self.device)
        model = self.network(label)
        return self.memoized(label, wav, lambda: model.encode(wav.to(self.device, torch.float32), None))

    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Codes ``[B, n, frames]``: the model's full-depth encoding (memoized per input), first n kept."""
        op = self.resolve_op(operating_point)
        wav = self.check_wav(wav, 1)
        label, n = self._model_and_n(op)
        codes = self._full_codes(wav, label)[:, :n]
        return Encoded(self.name, op.name, self.config_of(label).sample_rate_hz, 1, int(wav.shape[-1]),
                       int(wav.shape[0]), codes.cpu())

    # --- batched coding ----------------------------------------------------------------------
    def default_frame_layout(self) -> FrameLayout:
        """Each model's frames (``padded_length(T) / samples_per_frame``) on the grid of the largest frame.

        The models of the set may differ in time compression (512 and 256 samples per frame for the
        shipped 6k and 12k); padding steps and windows are multiples of every model's frame.
        """
        first = self.config_of(next(iter(self.cards)))
        hop = math.lcm(*(self.config_of(label).samples_per_frame for label in self.cards))
        return FrameLayout.default(hop, first.sample_rate_hz, lambda op, n: self._shape(op, 1, n)[2],
                                   hop_of=lambda op: self.config_of(self._model_and_n(op)[0]).samples_per_frame)

    def encode_group(self, op: OperatingPoint) -> str:
        """The points of one model share its full-depth encode."""
        return f"model:{self._model_and_n(op)[0]}"

    def encode_shared(self, wav: torch.Tensor, op: OperatingPoint) -> None:
        """The full-depth codes of ``wav`` by ``op``'s model (memoized)."""
        self._full_codes(self.check_wav(wav, 1), self._model_and_n(op)[0])

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Audio ``[B, 1, num_samples]`` from the codes, by the operating point's model."""
        if not self._loaded:
            self.load(self.device)
        label, _ = self._model_and_n(self.resolve_op(encoded.operating_point))
        codes = torch.as_tensor(encoded.payload, dtype=torch.long)
        return self.network(label).decode(codes.to(self.device), encoded.num_samples).float().cpu()

    # --- bitstream -------------------------------------------------------------------------
    def _shape(self, op: OperatingPoint, batch_size: int, num_samples: int) -> tuple[int, int, int]:
        """The codes' shape ``(B, n, frames)`` for ``num_samples`` samples."""
        from bench.models.eulerodec_model import STFTFrontend

        label, n = self._model_and_n(op)
        cfg = self.config_of(label)
        fe = STFTFrontend(cfg.n_fft, cfg.hop_length, cfg.time_downsample, cfg.compress_alpha)
        return batch_size, n, fe.padded_length(num_samples) // cfg.samples_per_frame

    def pack_payload(self, encoded: Encoded) -> bytes:
        """The codes at ``bits_per_code`` bits each, MSB first, C order."""
        op = self.resolve_op(encoded.operating_point)
        codes = np.asarray(torch.as_tensor(encoded.payload).cpu().numpy(), dtype=np.int64)
        expected = self._shape(op, encoded.batch_size, encoded.num_samples)
        if codes.shape != expected:
            raise ValueError(f"eulerodec codes have shape {codes.shape}, expected {expected}")
        return pack_codes(codes, self.config_of(self._model_and_n(op)[0]).bits_per_code)

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> Any:
        """Codes from a payload, its size checked against the header's shape."""
        try:
            op = self.resolve_op(header.operating_point)
        except KeyError as exc:
            raise BitstreamError(f"eulerodec bitstream names an unknown operating point "
                                 f"{header.operating_point!r}") from exc
        cfg = self.config_of(self._model_and_n(op)[0])
        if header.num_channels != 1 or header.sample_rate_hz != cfg.sample_rate_hz:
            raise BitstreamError(f"eulerodec bitstream for {header.num_channels} ch at {header.sample_rate_hz} Hz "
                                 f"does not match this model (1 ch at {cfg.sample_rate_hz} Hz)")
        shape = self._shape(op, header.batch_size, header.num_samples)
        count = int(np.prod(shape))
        bits = cfg.bits_per_code
        if len(body) != packed_size(count, bits):
            raise BitstreamError(f"eulerodec payload has {len(body)} bytes, expected {packed_size(count, bits)} "
                                 f"for codes {shape} at {bits} bits (truncated or trailing bytes)")
        return torch.from_numpy(unpack_codes(body, bits, count).reshape(shape))


register_codec("eulerodec", EuleroDecCodec)
