"""``decoded:DIR``: reconstructions another tool produced, scored and reported as a codec bench never ran.

* Pairing: the reconstruction of item ``ID`` is ``DIR/ID.EXT`` (any audio extension; for folder
  datasets the id is the file's relative path without extension, so the folder mirrors the dataset),
  else ``DIR/NAME.EXT`` where NAME is the stem of the item's own file. No match fails that pair.
* Rate: a bitstream beside the reconstruction (``DIR/ID.bin`` or ``DIR/ID.ecdc``: its size in bytes)
  or a CSV ``DIR/bytes.csv`` (columns ``id,n_bytes``; id = the item id or the
  decode's file stem) gives measured kbps. Without either, the rate
  is *not measured*: measured kbps is empty and the coded row says so; the operating point's
  nominal rate comes from ``DIR/bench-decoded.json`` (``{"nominal_kbps": 6.0, "name": "my codec"}``),
  else it is NaN.
* The decodes are read at their own rate and channels and brought to the item's rate by the
  harness's one resampler; the usual length check applies (a truncated decode fails its pair).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.codecs.base import BitstreamHeader, Codec, CodecSpec, Encoded, OperatingPoint, register_codec
from bench.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a")
BITSTREAM_EXTENSIONS = (".bin", ".ecdc")


class DecodedError(UserError):
    """A ``decoded:DIR`` folder that cannot be used (missing, unreadable description)."""


class DecodedCodec(Codec):
    """Reconstructions on disk, paired to items by id or file name; not a codec bench can run on new audio."""

    name = "decoded"
    #: the runner asks :meth:`reconstruction` for each item instead of encoding and decoding
    external = True

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint)
        if not checkpoint:
            raise DecodedError("decoded needs a folder: --codecs decoded:DIR")
        self.folder = str(Path(checkpoint).expanduser().resolve())
        if not Path(self.folder).is_dir():
            raise DecodedError(f"decoded:{checkpoint}: no such folder")
        self._byte_counts: dict[str, int] | None = None

    def description(self) -> dict[str, Any]:
        """``bench-decoded.json`` of the folder ({} when absent)."""
        path = Path(self.folder) / "bench-decoded.json"
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DecodedError(f"{path}: not readable JSON ({exc})") from None
        if not isinstance(data, dict):
            raise DecodedError(f"{path}: must hold a JSON object")
        return data

    @property
    def spec(self) -> CodecSpec:
        """One operating point, ``decoded``, at the nominal rate the folder's description gives (else NaN)."""
        desc = self.description()
        kbps = float(desc.get("nominal_kbps", math.nan))
        return CodecSpec(name=self.name, sample_rate_hz=0, channels=0,
                         operating_points=[OperatingPoint("decoded", kbps, {"folder": self.folder}, "external")],
                         family="external", description=str(desc.get("name", f"decodes in {self.folder}")))

    @property
    def checkpoint_hash(self) -> str:
        """The folder's listing (names, sizes, modification times): a changed decode changes the identity."""
        import hashlib

        h = hashlib.sha256()
        for p in sorted(Path(self.folder).rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(self.folder)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:32]

    def find(self, item_id: str, item_path: str) -> Path | None:
        """The reconstruction file of an item, by id, else by its file's stem."""
        root = Path(self.folder)
        for stem in (item_id, Path(item_path).stem):
            for ext in AUDIO_EXTENSIONS:
                p = root / f"{stem}{ext}"
                if p.is_file():
                    return p
        return None

    def byte_count(self, item_id: str, audio_path: Path) -> int | None:
        """The item's bitstream size: a bitstream file beside the decode, else ``bytes.csv``, else None."""
        for ext in BITSTREAM_EXTENSIONS:
            p = audio_path.with_suffix(ext)
            if p.is_file():
                return p.stat().st_size
        if self._byte_counts is None:
            self._byte_counts = {}
            table = Path(self.folder) / "bytes.csv"
            if table.is_file():
                with table.open(newline="") as f:
                    for row in csv.DictReader(f):
                        try:
                            self._byte_counts[str(row["id"])] = int(row["n_bytes"])
                        except (KeyError, TypeError, ValueError):
                            raise DecodedError(f"{table}: needs columns id,n_bytes with integer byte counts") from None
        found = self._byte_counts.get(item_id)
        return found if found is not None else self._byte_counts.get(audio_path.stem)

    def reconstruction(self, item_id: str, item_path: str) -> tuple[np.ndarray, int, int | None, str]:
        """(decode [C, T], its rate, bitstream bytes or None, the file) of an item; FileNotFoundError if none."""
        from bench.audio import load_audio

        path = self.find(item_id, item_path)
        if path is None:
            raise FileNotFoundError(f"no reconstruction of item {item_id!r} in {self.folder} "
                                    f"(looked for {item_id}.EXT and {Path(item_path).stem}.EXT)")
        audio = load_audio(path)
        return audio.samples, audio.sample_rate_hz, self.byte_count(item_id, path), str(path)

    # the Codec interface: decodes made elsewhere cannot code new audio
    def encode(self, wav: torch.Tensor, operating_point: OperatingPoint | str) -> Encoded:
        """Refused: the decodes exist already; the runner reads them with :meth:`reconstruction`."""
        raise TypeError("decoded: reconstructions made elsewhere cannot encode new audio")

    def decode(self, encoded: Encoded) -> torch.Tensor:
        """Refused, as :meth:`encode`."""
        raise TypeError("decoded: reconstructions made elsewhere have no bitstream to decode")

    def pack_payload(self, encoded: Encoded) -> bytes:
        """Refused, as :meth:`encode`."""
        raise TypeError("decoded: no payload")

    def unpack_payload(self, body: bytes, header: BitstreamHeader) -> Any:
        """Refused, as :meth:`encode`."""
        raise TypeError("decoded: no payload")


register_codec("decoded", DecodedCodec, in_all=False)
