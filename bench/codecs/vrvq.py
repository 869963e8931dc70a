"""VRVQ (variable-bitrate RVQ on the DAC backbone), trained in this repository, behind the Codec interface.

* Weights: a bench checkpoint (``NAME.safetensors`` + ``NAME.json`` card) written by
  ``bench train vrvq``; by default the shipped ``bench/codecs/checkpoints/vrvq_small.safetensors``,
  any other with ``--codecs vrvq:PATH``. A missing checkpoint is an error, never random weights.
* Operating points, two families from the same weights:

  - **VBR** ``L<level>`` (``vrvq@L1``, ``kind="vbr"``): the importance map scaled by ``level x N_q``
    picks a prefix of 1..N_q codebooks per frame. The levels are those validated in the card
    (0.25 .. 6 for the shipped model).
  - **CBR** ``n<k>`` (``vrvq@n4``): the first k codebooks on every frame, as DAC does.

* Nominal bitrate: CBR ``frame rate x k x log2(K)``. For VBR the rate depends on the audio, so the
  nominal figure is **the mean payload rate measured on the training run's held-out validation clips**
  (stored per level in the card under ``validation.vbr_levels``; side information included, header
  not); a card without it falls back to the level's upper bound
  ``frame rate x (min(N_q, floor(level N_q) + 1) x log2(K) + ceil(log2 N_q))``. The harness records
  the measured kbps of every item beside it, which is the figure to compare.
* Bitstream (after the harness header): CBR - the codes ``[B, k, frames]`` at log2(K) bits each, C
  order (k is in the header's operating point, frames follow from the sample count). VBR - first the
  per-frame codebook counts, ``count - 1`` in ``ceil(log2 N_q)`` bits each (fixed width, not entropy
  coded: 3 bits per frame, 0.225 kbps at 75 frames/s for N_q = 8), ``[B, frames]`` in C order; then
  only the active codes, frame by frame, codebooks in order, log2(K) bits each. All fields MSB
  first, one zero-padded final byte. So measured kbps really falls where frames use fewer codebooks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from bench.models.vrvq_model import VRVQ, VRVQConfig

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "vrvq_small.safetensors"
DEFAULT_LEVELS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


# ---- mixed-width bit packing ---------------------------------------------------------------------------


def pack_fields(sections: list[tuple[np.ndarray, int]]) -> bytes:
    """Concatenate sections of unsigned integers, each at its own bit width, MSB first; pad the last byte."""
    parts: list[np.ndarray] = []
    for values, bits in sections:
        flat = np.asarray(values, dtype=np.int64).reshape(-1)
        if bits == 0 or flat.size == 0:
            continue
        if flat.min() < 0 or flat.max() >= 1 << bits:
            raise ValueError(f"values must be in 0..{(1 << bits) - 1} to pack in {bits} bits")
        shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
        parts.append(((flat[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1))
    if not parts:
        return b""
    return np.packbits(np.concatenate(parts)).tobytes()


def read_field(bit_array: np.ndarray, start_bit: int, count: int, bits: int) -> np.ndarray:
    """``count`` unsigned integers of ``bits`` bits from an unpacked bit array, starting at ``start_bit``."""
    if bits == 0:
        return np.zeros(count, dtype=np.int64)
    chunk = bit_array[start_bit : start_bit + count * bits]
    if chunk.size != count * bits:
        raise BitstreamError("vrvq payload is truncated")
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return chunk.reshape(count, bits).astype(np.int64) @ weights


def level_name(level: float) -> str:
    """Operating-point name of a VBR level: ``L`` plus the shortest exact form (``L0.25``, ``L2``)."""
    return f"L{level:g}"


class VRVQCodec(CheckpointCodec):
    """VRVQ from a bench checkpoint; VBR levels and CBR codebook counts as operating points."""

    name = "vrvq"
    model: VRVQ | None  # the network, once loaded

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint)
        self._rms_measured: bool | None = None  # see _importance_uses_batch

    @property
    def default_checkpoint(self) -> Path:
        """The shipped ``small`` model, used when no checkpoint is given."""
        return DEFAULT_CHECKPOINT  # read at call time, so a patched module default is honoured

    def build_network(self, config: VRVQConfig) -> VRVQ:
        """A VRVQ network of the card's config (weights are loaded by the base class)."""
        from bench.models.vrvq_model import VRVQ

        return VRVQ(config)

    def network(self) -> VRVQ:
        """The network, loaded on first use."""
        from bench.models.vrvq_model import VRVQ

        return self._network_as(VRVQ)

    def config_from_dict(self, config: dict[str, Any]) -> VRVQConfig:
        """The :class:`~bench.models.vrvq_model.VRVQConfig` recorded in the card."""
        from bench.models.vrvq_model import VRVQConfig

        return VRVQConfig.from_dict(config)

    def _validated_levels(self) -> dict[str, dict[str, Any]]:
        """Per-level validation results in the card (``{"L1": {"kbps": ...}, ...}``); empty if none."""
        return dict(self.card.get("validation", {}).get("vbr_levels", {}))

    def vbr_nominal_kbps(self, level: float) -> float:
        """Mean payload kbps of ``level`` on the held-out validation clips (card), else its upper bound."""
        measured = self._validated_levels().get(level_name(level), {}).get("kbps")
        if measured is not None:
            return round(float(measured), 4)
        cfg = self.config
        bits = cfg.max_count(level) * cfg.backbone.bits_per_code + cfg.count_bits
        return round(cfg.backbone.frame_rate_hz * bits / 1000.0, 4)

    def levels(self) -> list[float]:
        """VBR levels offered: those validated in the card, else :data:`DEFAULT_LEVELS`."""
        names = self._validated_levels()
        if names:
            return sorted(float(n[1:]) for n in names)
        return list(DEFAULT_LEVELS)

    @property
    def spec(self) -> CodecSpec:
        """VBR levels then CBR depths 1..N_q, from the card (no weights read)."""
        cfg = self.config
        bb = cfg.backbone
        card = self.card
        ops = [OperatingPoint(level_name(lv), self.vbr_nominal_kbps(lv), {"level": lv}, kind="vbr")
               for lv in self.levels()]
        ops += [OperatingPoint(f"n{n}", round(bb.kbps(n), 4), {"n_codebooks": n}, kind="cbr")
                for n in range(1, bb.n_codebooks + 1)]
        training = card.get("training", {})
        return CodecSpec(
            name=self.name,
            sample_rate_hz=bb.sample_rate_hz,
            channels=1,
            operating_points=ops,
            family="dac",
            frame_rate_hz=bb.frame_rate_hz,
            codebook_sizes=[bb.codebook_size] * bb.n_codebooks,
            licence=card.get("licence", ""),
            requires=["torch", "safetensors"],
            description=(f"VRVQ ({card.get('name', 'vrvq')}): variable-bitrate RVQ on DAC, trained here: "
                         f"{training.get('steps', '?')} steps on {training.get('device', '?')}; VBR nominal kbps = "
                         "mean on held-out validation clips"),
            # default sweep for 'all' / a bare name: three VBR levels and three CBR depths; vrvq@* for all
            sweep=[p.name for p in ops if p.name in {"L0.5", "L2", "L6", "n1", "n2", f"n{bb.n_codebooks}"}],
        )

    def _analysis(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes ``[B, N_q, frames]`` of every stage, importance ``[B, frames]``): one encoder pass, memoized.

        Every point slices it: CBR n keeps the first n stages (a residual stage never depends on later
        ones), a VBR level keeps each frame's prefix of ``min(N_q, floor(level N_q p) + 1)`` codebooks,
        exactly as ``VRVQ.encode_frames`` computes them one point at a time.
        """
        model = self.network()

        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                z, p = model.analyse(wav.to(self.device, torch.float32))
                return model.quantize_stages(z).codes, p

        return self.memoized("analysis", wav, compute)

    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Payload ``{"codes": [B, n, frames], "counts": [B, frames]}`` (int64) of mono ``wav [B, 1, T]``.

        Codes past a frame's count are 0 and never transmitted; in CBR n = k and every count is k. All
        points slice one memoized encoder pass (:meth:`_analysis`).
        """
        from bench.models.vrvq_model import counts_from_importance, prefix_mask

        op = self.resolve_op(operating_point)
        wav = self.check_wav(wav, 1)
        full, p = self._analysis(wav)
        nq = self.config.n_codebooks
        if op.kind == "vbr":
            counts = counts_from_importance(p, float(op.params["level"]), nq)
            codes = full * prefix_mask(counts, nq).long()
        else:
            n = int(op.params["n_codebooks"])
            codes = full[:, :n]
            counts = torch.full((full.shape[0], full.shape[-1]), n, dtype=torch.long, device=full.device)
        return Encoded(self.name, op.name, self.config.backbone.sample_rate_hz, 1, int(wav.shape[-1]),
                       int(wav.shape[0]), {"codes": codes.cpu(), "counts": counts.cpu()})

    def encode_direct(self, wav: torch.Tensor, op: OperatingPoint) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, counts) of ``VRVQ.encode_frames`` at ``op`` alone, without the shared pass (tests compare)."""
        model = self.network()
        x = self.check_wav(wav, 1).to(self.device, torch.float32)
        if op.kind == "vbr":
            return model.encode_frames(x, level=float(op.params["level"]))
        return model.encode_frames(x, n_codebooks=int(op.params["n_codebooks"]))

    # --- batched coding ----------------------------------------------------------------------------------
    def default_frame_layout(self) -> FrameLayout | None:
        """DAC's frames (ceil(T / hop)); None (item by item) when the importance net normalises by the batch."""
        if self._importance_uses_batch():
            return None
        bb = self.config.backbone
        return FrameLayout.default(bb.hop_length, bb.sample_rate_hz, lambda _op, n: self._frames(n))

    def _importance_uses_batch(self) -> bool:
        """Whether the importance net divides by the RMS of the whole batch (an unmeasured running RMS).

        An untrained checkpoint with ``importance_input_norm`` has a running RMS of 0, and then
        ``ImportanceNet`` falls back to the batch's RMS: the counts would depend on the other items.
        Read from the weights file (one tensor), so the answer does not change with ``load``.
        """
        if not self.config.importance_input_norm:
            return False
        if self._rms_measured is None:
            from safetensors import safe_open

            with safe_open(str(self.checkpoint_path), "pt") as f:
                key = "generator.importance.running_rms"
                self._rms_measured = key not in f.keys() or float(f.get_tensor(key)) != 0.0
        return not self._rms_measured

    def encode_group(self, op: OperatingPoint) -> str:
        """CBR depths and VBR levels all slice one encoder pass with its importance map."""
        return "analysis"

    def encode_shared(self, wav: torch.Tensor, op: OperatingPoint) -> None:
        """The shared encoder pass of ``wav`` (memoized)."""
        self._analysis(self.check_wav(wav, 1))

    def payload_pad_value(self, key: str | None, payload: Any) -> int:
        """Codes pad with 0; counts with the payload's depth (every pad frame uses all its codebooks, all 0)."""
        return int(payload["codes"].shape[1]) if key == "counts" else 0

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Audio ``[B, 1, num_samples]`` (float32, CPU) from the codes and per-frame counts."""
        model = self.network()
        codes = torch.as_tensor(encoded.payload["codes"], dtype=torch.long).to(self.device)
        counts = torch.as_tensor(encoded.payload["counts"], dtype=torch.long).to(self.device)
        return model.decode_frames(codes, counts, encoded.num_samples).float().cpu()

    # --- bitstream ---------------------------------------------------------------------------------------
    def _frames(self, num_samples: int) -> int:
        """Code frames for ``num_samples``: ceil(num_samples / hop), at least 1."""
        return max(1, math.ceil(num_samples / self.config.backbone.hop_length))

    def pack_payload(self, encoded: Encoded) -> bytes:
        """CBR: every code. VBR: the per-frame counts, then only the active codes (see the module docstring)."""
        op = self.resolve_op(encoded.operating_point)
        cfg = self.config
        bits = cfg.backbone.bits_per_code
        codes = np.asarray(torch.as_tensor(encoded.payload["codes"]).cpu().numpy(), dtype=np.int64)
        counts = np.asarray(torch.as_tensor(encoded.payload["counts"]).cpu().numpy(), dtype=np.int64)
        frames = self._frames(encoded.num_samples)
        if counts.shape != (encoded.batch_size, frames) or codes.ndim != 3 or codes.shape[0] != encoded.batch_size \
                or codes.shape[2] != frames:
            raise ValueError(f"vrvq payload has codes {codes.shape} and counts {counts.shape}, expected "
                             f"[{encoded.batch_size}, n, {frames}] and [{encoded.batch_size}, {frames}]")
        if op.kind != "vbr":
            n = int(op.params["n_codebooks"])
            if codes.shape[1] != n or (counts != n).any():
                raise ValueError(f"vrvq@{op.name} payload must use exactly {n} codebooks on every frame")
            return pack_fields([(codes, bits)])
        nq = cfg.n_codebooks
        if codes.shape[1] != nq or counts.min() < 1 or counts.max() > nq:
            raise ValueError(f"vrvq VBR payload needs codes [B, {nq}, T] and counts in 1..{nq}")
        active = np.arange(nq)[None, None, :] < counts[:, :, None]  # [B, T, N_q]
        active_codes = codes.transpose(0, 2, 1)[active]  # frame by frame, codebooks in order
        return pack_fields([(counts - 1, cfg.count_bits), (active_codes, bits)])

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> dict[str, torch.Tensor]:
        """``{"codes": [B, n, frames], "counts": [B, frames]}`` (int64) back from the body."""
        try:
            op = self.resolve_op(header.operating_point)
        except KeyError as exc:
            raise BitstreamError(f"vrvq bitstream names an unknown operating point {header.operating_point!r}") from exc
        cfg = self.config
        bb = cfg.backbone
        if header.num_channels != 1 or header.sample_rate_hz != bb.sample_rate_hz:
            raise BitstreamError(f"vrvq bitstream for {header.num_channels} ch at {header.sample_rate_hz} Hz does "
                                 f"not match this checkpoint (1 ch at {bb.sample_rate_hz} Hz)")
        b, frames, bits = header.batch_size, self._frames(header.num_samples), bb.bits_per_code
        bit_array = np.unpackbits(np.frombuffer(body, dtype=np.uint8))
        if op.kind != "vbr":
            n = int(op.params["n_codebooks"])
            total = b * n * frames * bits
            if len(body) != math.ceil(total / 8):
                raise BitstreamError(f"vrvq payload has {len(body)} bytes, expected {math.ceil(total / 8)} for "
                                     f"codes [{b}, {n}, {frames}] at {bits} bits (truncated or trailing bytes)")
            codes = read_field(bit_array, 0, b * n * frames, bits).reshape(b, n, frames)
            counts = np.full((b, frames), n, dtype=np.int64)
        else:
            nq = cfg.n_codebooks
            counts = read_field(bit_array, 0, b * frames, cfg.count_bits).reshape(b, frames) + 1
            if counts.max() > nq:
                raise BitstreamError(f"vrvq payload signals {counts.max()} codebooks in a frame; this model has {nq}")
            n_active = int(counts.sum())
            total = b * frames * cfg.count_bits + n_active * bits
            if len(body) != math.ceil(total / 8):
                raise BitstreamError(f"vrvq payload has {len(body)} bytes, expected {math.ceil(total / 8)} for "
                                     f"{n_active} active codes in {b} x {frames} frames (truncated or trailing bytes)")
            active_codes = read_field(bit_array, b * frames * cfg.count_bits, n_active, bits)
            active = np.arange(nq)[None, None, :] < counts[:, :, None]
            codes_btn = np.zeros((b, frames, nq), dtype=np.int64)
            codes_btn[active] = active_codes
            codes = codes_btn.transpose(0, 2, 1)
        return {"codes": torch.from_numpy(np.ascontiguousarray(codes)), "counts": torch.from_numpy(counts)}


register_codec("vrvq", VRVQCodec)
