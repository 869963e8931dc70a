"""``musdb18``: MUSDB18 (Zenodo 1117372) and MUSDB18-HQ (Zenodo 3338373), 44.1 kHz stereo music.

Both releases, in the layouts their archives unpack to::

    <root>/musdb18/{train,test}/<Artist - Title>.stem.mp4          5 AAC streams:
                                                                    0 mixture, 1 drums, 2 bass, 3 other, 4 vocals
    <root>/musdb18hq/{train,test}/<Artist - Title>/{mixture,drums,bass,other,vocals}.wav

(``MUSDB18``/``MUSDB18-HQ`` spellings are accepted too, and ``--root`` may point at the release
folder itself.) The ``.stem.mp4`` streams are decoded with PyAV (``bench.audio.load_audio`` with
``stream_index``); note that they are AAC-coded already, so codec scores on them measure coding
of coded audio; prefer MUSDB18-HQ where you have it.

* Splits: ``train`` (100 tracks) and ``test`` (50 tracks, DAC's music test set).
* Stems: the mixture by default; ``--dataset-opt stems=vocals,drums`` (or ``all``) adds one item per
  track and stem, id ``<track>/<stem>``. ``track`` is the cluster for bootstrap intervals.
* Format: option ``format=auto`` (HQ when present, else stems), ``hq``, ``stems``, or ``7s`` (the
  public 7-second preview release ``MUSDB18-7-STEMS.zip``, unpacked to ``musdb18-7s``).
* Excerpts: 10 s, chosen reproducibly with a -40 LUFS gate (``bench.datasets.protocol``), per item.
* Download: ``bench data download musdb18 [--dataset-opt format=hq|7s]``; Zenodo may ask you to
  request access first; a file fetched by hand into ``<root>/.bench/downloads`` is then verified
  and unpacked by the same command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from bench.datasets._common import DatasetOptionError, Downloadable, ExcerptOption, missing_data, parse_optional_float
from bench.datasets.base import Item, register_dataset
from bench.datasets.download import Resource
from bench.datasets.protocol import apply_excerpt

STEMS = ("mixture", "drums", "bass", "other", "vocals")  # also the stream order of .stem.mp4
FORMATS = ("auto", "hq", "stems", "7s")
_DIRS = {
    "hq": ("musdb18hq", "MUSDB18-HQ", "musdb18-hq", "MUSDB18HQ"),
    "stems": ("musdb18", "MUSDB18"),
    "7s": ("musdb18-7s", "MUSDB18-7", "MUSDB18-7-STEMS"),
}
_RESOURCES = {
    "stems": Resource(
        url="https://zenodo.org/records/1117372/files/musdb18.zip?download=1", filename="musdb18.zip",
        md5="af06762477334799bfc5abf237648207", size_bytes=4684228845, unpack_to="musdb18", provides="musdb18/test",
        checksum_source="md5 published on sigsep.github.io/datasets/musdb.html and the Zenodo record"),
    "hq": Resource(
        url="https://zenodo.org/records/3338373/files/musdb18hq.zip?download=1", filename="musdb18hq.zip",
        sha256="baac80d0483c61d74b2e5f3be75fa557eec52898339e6aa45c1fa48833c5d21d", unpack_to="musdb18hq",
        provides="musdb18hq/test", checksum_source="sha256 pinned by torchaudio (MUSDB_HQ)"),
    "7s": Resource(
        url="https://zenodo.org/records/3270814/files/MUSDB18-7-STEMS.zip?download=1", filename="MUSDB18-7-STEMS.zip",
        md5="dc2bdfac5b46ce742bd60009866758a5", size_bytes=147209385, unpack_to="musdb18-7s",
        provides="musdb18-7s/test",
        mirrors=("https://github.com/sigsep/sigsep-mus-db/releases/download/v0.4.0/MUSDB18-7-STEMS.zip",),
        checksum_source="Zenodo record 3270814 md5"),
}


class MUSDB18Dataset(ExcerptOption, Downloadable):
    """MUSDB18 tracks (mixture or chosen stems) as 10 s excerpts, from the HQ, stems or 7 s release."""

    name = "musdb18"
    splits = ("test", "train")
    default_split = "test"
    domains = ("music",)
    description = "MUSDB18 (.stem.mp4) / MUSDB18-HQ (WAV) music, 44.1 kHz stereo; mixture or stems, 10 s excerpts"
    licence = "research/non-commercial (per-track terms)"
    option_defaults = {"format": "auto", "stems": "mixture", "excerpt_s": 10.0}

    def validate_options(self) -> None:
        """Check ``format`` and ``stems`` and parse ``excerpt_s`` (seconds or none)."""
        if self.options["format"] not in FORMATS:
            raise DatasetOptionError(f"musdb18: format={self.options['format']!r}; choose one of {', '.join(FORMATS)}")
        self.stem_list()  # raises on unknown stems
        self.options["excerpt_s"] = parse_optional_float("excerpt_s", self.options["excerpt_s"])

    def stem_list(self) -> tuple[str, ...]:
        """The stems the ``stems`` option selects, in the order given (``all`` = every stem)."""
        raw = str(self.options.get("stems") or "mixture")
        if raw == "all":
            return STEMS
        stems = tuple(s.strip() for s in raw.split(",") if s.strip())
        bad = [s for s in stems if s not in STEMS]
        if bad or not stems:
            raise DatasetOptionError(f"musdb18: stems={raw!r}; choose from {', '.join(STEMS)} or 'all'")
        return stems

    @property
    def expected_counts(self) -> dict[str, int]:
        """100 train and 50 test tracks times the selected stems (not checked for the 7 s previews)."""
        if self.options["format"] == "7s":
            return {}
        n = len(self.stem_list())
        return {"train": 100 * n, "test": 50 * n}

    def locate(self, split: str, root: str | os.PathLike | None = None) -> tuple[str, Path]:
        """(format, split directory) or DataMissingError naming the download command."""
        from bench.config import data_root

        base = data_root(root, self.name)
        fmt = self.options["format"]
        order = ("hq", "stems", "7s") if fmt == "auto" else (fmt,)
        for f in order:
            dirs = [base / name for name in _DIRS[f]]
            dirs += [d / d.name for d in dirs] + [base]  # also an archive that nests its own top folder
            for d in dirs:
                split_dir = d / split
                if split_dir.is_dir() and self._looks_like(f, split_dir):
                    return f, split_dir
        opts = None if fmt in ("auto", "stems") else {"format": fmt}
        raise missing_data(self.name, split, base, f"no {' or '.join(_DIRS[order[0]][:2])}/{split} folder", explicit_root=root,
                           options=opts)

    @staticmethod
    def _looks_like(fmt: str, split_dir: Path) -> bool:
        if fmt == "hq":
            return any((p / "mixture.wav").is_file() for p in split_dir.iterdir() if p.is_dir())
        return any(p.name.endswith(".stem.mp4") for p in split_dir.iterdir())

    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """One excerpt per track and selected stem, tracks sorted by name; ``track`` is the cluster."""
        split = self.check_split(split)
        fmt, split_dir = self.locate(split, root)
        stems = self.stem_list()
        policy = self.excerpt_policy
        if fmt == "hq":
            tracks = sorted((p.name, p) for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            tracks = sorted((p.name[: -len(".stem.mp4")], p) for p in split_dir.iterdir()
                            if p.name.endswith(".stem.mp4") and not p.name.startswith("."))
        for track, path in tracks:
            for stem in stems:
                extra: dict[str, Any] = {
                    "stem": stem, "format": {"hq": "MUSDB18-HQ", "stems": "MUSDB18", "7s": "MUSDB18-7"}[fmt]}
                if fmt == "hq":
                    file = path / f"{stem}.wav"
                    if not file.is_file():
                        continue
                else:
                    file = path
                    extra["stream_index"] = STEMS.index(stem)
                item_id = track if stems == ("mixture",) else f"{track}/{stem}"
                item = Item(id=item_id, path=str(file), domain="music", dataset=self.name, split=split, track=track,
                            extra=extra)
                yield apply_excerpt(item, policy)

    def resources(self, split: str) -> list[tuple[str, Resource]]:
        """The Zenodo archive of the chosen format (``auto`` downloads the stems release)."""
        fmt = self.options["format"]
        fmt = "stems" if fmt == "auto" else fmt
        return [(f"musdb18-{fmt}", _RESOURCES[fmt])]


MUSDB18 = register_dataset(MUSDB18Dataset())
