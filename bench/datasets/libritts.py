"""``libritts``: LibriTTS (OpenSLR 60) and LibriTTS-R (OpenSLR 141), 24 kHz read English speech.

The layout the OpenSLR archives unpack to::

    <root>/LibriTTS/<split>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav
                                               ... .normalized.txt  (transcript used here)
                                               ... .original.txt
    <root>/LibriTTS_R/<split>/...  (LibriTTS-R: same layout, restored audio)

``<root>`` is ``--root``, ``$BENCH_DATA_ROOT``, the config file's data root, or the default
(see ``bench.config``); it may also point straight at the ``LibriTTS`` folder.

* Items: whole utterances (the protocol for speech), id = utterance id, speaker = reader id
  (the cluster for bootstrap intervals), transcript = ``.normalized.txt``.
* Splits: train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other, test-clean,
  test-other. ``bench run --split test-other`` with no ``--dataset`` means this dataset; it is the
  only one that claims these split names.
* LibriTTS-R: ``--dataset-opt variant=r``; with the default ``variant=auto`` it is used when
  only ``LibriTTS_R`` is present (LibriTTS wins when both are).
* Download: ``bench data download libritts --split test-other`` (OpenSLR archive, md5 checked).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from bench.datasets._common import Configurable, DatasetOptionError, Downloadable, missing_data, read_text
from bench.datasets.base import Item, register_dataset
from bench.datasets.download import Resource
from bench.datasets.protocol import WHOLE

SPLITS = ("test-clean", "test-other", "dev-clean", "dev-other", "train-clean-100", "train-clean-360", "train-other-500")

# md5 digests published by OpenSLR (resources/60 and /141 md5sum listings); sha256 where
# torchaudio pins one (LIBRITTS._CHECKSUMS). Both are checked when present.
_LIBRITTS_MD5 = {
    "dev-clean": "0c3076c1e5245bb3f0af7d82087ee207",
    "dev-other": "815555d8d75995782ac3ccd7f047213d",
    "test-clean": "7bed3bdb047c4c197f1ad3bc412db59f",
    "test-other": "ae3258249472a13b5abef2a816f733e4",
    "train-clean-100": "4a8c202b78fe1bc0c47916a98f3a2ea8",
    "train-clean-360": "a84ef10ddade5fd25df69596a2767b2d",
    "train-other-500": "7b181dd5ace343a5f38427999684aa6f",
}
_LIBRITTS_SHA256 = {
    "dev-clean": "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a",
    "dev-other": "d413eda26f3a152ac7c9cf3658ef85504dfb1b625296e5fa83727f5186cca79c",
    "test-clean": "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5",
}
_LIBRITTS_R_MD5 = {
    "dev-clean": "2c1f5312914890634cc2d15783032ff3",
    "dev-other": "62d3a80ad8a282b6f31b3904f0507e4f",
    "test-clean": "4d373d453eb96c0691e598061bbafab7",
    "test-other": "dbc0959d8bdb6d52200595cabc9995ae",
    "train-clean-100": "6df668d8f5f33e70876bfa33862ad02b",
    "train-clean-360": "382eb3e64394b3da6a559f864339b22c",
    "train-other-500": "a37a8e9f4fe79d20601639bf23d1add8",
}
# Utterance counts of the LibriTTS release (Zen et al., 2019, table 1); `bench data verify` checks them.
LIBRITTS_COUNTS = {
    "train-clean-100": 33236, "train-clean-360": 116500, "train-other-500": 205068,
    "dev-clean": 5736, "dev-other": 5511, "test-clean": 4837, "test-other": 5120,
}
FOLDERS = {"original": "LibriTTS", "r": "LibriTTS_R"}


class LibriTTSDataset(Configurable, Downloadable):
    """LibriTTS or LibriTTS-R utterances with their normalised transcripts, speaker = reader."""

    name = "libritts"
    splits = SPLITS
    default_split = "test-clean"
    domains = ("speech",)
    description = "LibriTTS / LibriTTS-R read English speech, 24 kHz, whole utterances with transcripts"
    licence = "CC BY 4.0"
    option_defaults = {"variant": "auto"}
    excerpt_policy = WHOLE

    def validate_options(self) -> None:
        """Check ``variant``: auto, original (LibriTTS) or r (LibriTTS-R)."""
        if self.options["variant"] not in ("auto", "original", "r"):
            raise DatasetOptionError(f"libritts: variant={self.options['variant']!r}; choose auto, original or r")

    @property
    def variant(self) -> str:
        """The requested variant option: auto, original or r."""
        return self.options["variant"]

    @property
    def expected_counts(self) -> dict[str, int]:
        """Published utterance counts, checked only for the original release (none are published for -R)."""
        return LIBRITTS_COUNTS if self.variant == "original" else {}

    # -- locating -------------------------------------------------------------------------

    def _candidates(self, base: Path, split: str) -> list[tuple[str, Path]]:
        variants = ["original", "r"] if self.variant == "auto" else [self.variant]
        out = []
        for v in variants:
            folder = FOLDERS[v]
            out.append((v, base / folder / split))
            if base.name == folder:  # --root points at the LibriTTS folder itself
                out.append((v, base / split))
        if base.name == split:  # --root points at the split folder itself
            out.append(("r" if base.parent.name == FOLDERS["r"] else "original", base))
        return out

    def locate(self, split: str, root: str | os.PathLike | None = None) -> tuple[str, Path]:
        """(variant, split directory) or DataMissingError naming the download command."""
        from bench.config import data_root

        base = data_root(root, self.name)
        tried = self._candidates(base, split)
        for variant, path in tried:
            if path.is_dir():
                return variant, path
        folder = FOLDERS["r" if self.variant == "r" else "original"]
        raise missing_data(self.name, split, base, f"no {folder}/{split} directory", explicit_root=root,
                           options={"variant": "r"} if self.variant == "r" else None)

    # -- items ----------------------------------------------------------------------------

    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """Whole utterances of a split sorted by path, transcript from ``.normalized.txt`` (else ``.original.txt``)."""
        split = self.check_split(split)
        variant, directory = self.locate(split, root)
        wavs = sorted(directory.glob("*/*/*.wav"), key=lambda p: p.relative_to(directory).as_posix())
        if not wavs:
            raise missing_data(self.name, split, directory, "the split folder holds no <speaker>/<chapter>/*.wav",
                               explicit_root=root)
        for wav in wavs:
            utt = wav.stem
            transcript = None
            for ext in (".normalized.txt", ".original.txt"):
                txt = wav.with_name(utt + ext)
                if txt.is_file():
                    transcript = read_text(txt)
                    break
            speaker, chapter = wav.parent.parent.name, wav.parent.name
            yield Item(id=utt, path=str(wav), domain="speech", dataset=self.name, split=split,
                       transcript=transcript, speaker=speaker,
                       extra={"chapter": chapter, "variant": "LibriTTS-R" if variant == "r" else "LibriTTS"})

    # -- download -------------------------------------------------------------------------

    def resources(self, split: str) -> list[tuple[str, Resource]]:
        """The OpenSLR archive of the split (SLR141 for ``variant=r``, else SLR60) with its checksums."""
        if self.variant == "r":
            fname = split.replace("-", "_") + ".tar.gz"
            return [(f"libritts_r-{split}", Resource(
                url=f"https://www.openslr.org/resources/141/{fname}", filename=fname,
                md5=_LIBRITTS_R_MD5[split], provides=f"LibriTTS_R/{split}",
                mirrors=(f"https://us.openslr.org/resources/141/{fname}",
                         f"https://openslr.elda.org/resources/141/{fname}"),
                checksum_source="OpenSLR SLR141 md5"))]
        fname = f"{split}.tar.gz"
        return [(f"libritts-{split}", Resource(
            url=f"https://www.openslr.org/resources/60/{fname}", filename=fname,
            md5=_LIBRITTS_MD5[split], sha256=_LIBRITTS_SHA256.get(split, ""), provides=f"LibriTTS/{split}",
            mirrors=(f"https://us.openslr.org/resources/60/{fname}", f"https://openslr.elda.org/resources/60/{fname}"),
            checksum_source="OpenSLR SLR60 md5 (+ torchaudio sha256 where pinned)"))]


LIBRITTS = register_dataset(LibriTTSDataset())
