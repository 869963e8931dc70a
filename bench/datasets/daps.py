"""``daps``: DAPS, Device and Produced Speech (Mysore 2015; Zenodo 4660670), 44.1 kHz.

The layout the Zenodo archive unpacks to::

    <root>/daps/clean/f1_script1_clean.wav          studio recording, cleaned
    <root>/daps/cleanraw/f1_script1_cleanraw.wav    studio recording, raw
    <root>/daps/produced/f1_script1_produced.wav    professionally produced (EQ, compression)
    <root>/daps/ipad_balcony1/f1_script1_ipad_balcony1.wav ... 12 device/room versions

20 speakers (f1-f10, m1-m10) x 5 scripts, about 14 minutes per speaker, in every version.

* Splits follow DAC's evaluation (descript-audio-codec ``scripts/organize_daps.py``): ``test`` =
  held-out speakers F10 and M10, ``val`` = F2 and M2, ``train`` = the other 16; ``all`` = 20.
  Files whose name contains ``breaths`` are excluded, as DAC does.
* Version: option ``version`` (default ``clean``, DAC's test material); any of the folders above.
* Excerpts: the files are minutes long, so items are 10 s excerpts chosen reproducibly with a
  -40 LUFS loudness gate (``bench.datasets.protocol``), as DAC's test set (10 s, 1 per file).
  ``--dataset-opt excerpt_s=none`` scores whole files.
* Pairing: every item carries ``extra["pair"]`` with the paths of the same speaker/script in
  ``clean``, ``produced`` and (for device versions) the device file, so an enhancement-style
  evaluation can use the clean or produced file as the reference; :meth:`DAPSDataset.pairs`
  lists the aligned triples.
* Download: ``bench data download daps`` (one 15 GB archive, md5 checked).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

from bench.datasets._common import (
    DatasetOptionError,
    Downloadable,
    ExcerptOption,
    audio_files,
    missing_data,
    parse_optional_float,
)
from bench.datasets.base import Item, register_dataset
from bench.datasets.download import Resource
from bench.datasets.protocol import apply_excerpt

SPEAKERS = tuple(f"f{i}" for i in range(1, 11)) + tuple(f"m{i}" for i in range(1, 11))
VAL_SPEAKERS = ("f2", "m2")
TEST_SPEAKERS = ("f10", "m10")
STUDIO_VERSIONS = ("clean", "cleanraw", "produced")
DEVICE_VERSIONS = (
    "ipad_balcony1", "ipad_bedroom1", "ipad_confroom1", "ipad_confroom2", "ipad_livingroom1", "ipad_office1",
    "ipad_office2", "ipadflat_confroom1", "ipadflat_office1", "iphone_balcony1", "iphone_bedroom1",
    "iphone_livingroom1",
)
VERSIONS = STUDIO_VERSIONS + DEVICE_VERSIONS
_NAME = re.compile(r"^(?P<speaker>[fm]\d+)_(?P<script>script\d+)_(?P<version>.+)$")

DAPS_RESOURCE = Resource(
    url="https://zenodo.org/records/4660670/files/daps.tar.gz?download=1",
    filename="daps.tar.gz",
    md5="303c130b7ce2e02b59c7ca5cd595a89c",
    size_bytes=16055782487,
    provides="daps/clean",
    mirrors=("https://zenodo.org/api/records/4660670/files/daps.tar.gz/content",),
    checksum_source="Zenodo record 4660670 md5",
)


def split_of(speaker: str) -> str:
    """The DAC split of a DAPS speaker: test (f10, m10), val (f2, m2) or train."""
    return "test" if speaker in TEST_SPEAKERS else "val" if speaker in VAL_SPEAKERS else "train"


class DAPSDataset(ExcerptOption, Downloadable):
    """DAPS speech in one version (clean by default) as 10 s excerpts, split by speaker as DAC does."""

    name = "daps"
    splits = ("test", "val", "train", "all")
    default_split = "test"
    domains = ("speech",)
    description = "DAPS studio/produced/device speech, 44.1 kHz; test = held-out F10, M10 (DAC protocol)"
    licence = "CC BY-NC 4.0"
    option_defaults = {"version": "clean", "excerpt_s": 10.0}

    def validate_options(self) -> None:
        """Check ``version`` against the DAPS folders and parse ``excerpt_s`` (seconds or none)."""
        if self.options["version"] not in VERSIONS:
            raise DatasetOptionError(f"daps: version={self.options['version']!r}; choose one of {', '.join(VERSIONS)}")
        self.options["excerpt_s"] = parse_optional_float("excerpt_s", self.options["excerpt_s"])

    @property
    def version(self) -> str:
        """The DAPS version folder the items come from (``clean``, ``produced``, a device/room, ...)."""
        return self.options["version"]

    @property
    def expected_counts(self) -> dict[str, int]:
        """Files per split in the release: 5 scripts for each of 2, 2, 16 and 20 speakers."""
        return {"test": 10, "val": 10, "train": 80, "all": 100}

    def locate(self, split: str | None = None, root: str | os.PathLike | None = None) -> Path:
        """The ``daps`` directory (the one holding ``clean/``), or DataMissingError."""
        from bench.config import data_root

        base = data_root(root, self.name)
        for candidate in (base / "daps", base):
            if (candidate / self.version).is_dir():
                return candidate
        raise missing_data(self.name, None, base, f"no daps/{self.version} directory", explicit_root=root)

    def _files(self, daps_dir: Path, version: str) -> dict[tuple[str, str], Path]:
        out = {}
        for path in audio_files(daps_dir / version, (".wav",)):
            m = _NAME.match(path.stem)
            if not m or "breaths" in path.name or m["version"] != version:
                continue
            out[(m["speaker"], m["script"])] = path
        return out

    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """One excerpt per speaker/script file of the version, in speaker order, with its clean/produced pair."""
        split = self.check_split(split)
        daps_dir = self.locate(split, root)
        files = self._files(daps_dir, self.version)
        if not files:
            raise missing_data(self.name, None, daps_dir, f"daps/{self.version} has no <speaker>_<script>_{self.version}.wav",
                               explicit_root=root)
        clean = self._files(daps_dir, "clean") if (daps_dir / "clean").is_dir() else {}
        produced = self._files(daps_dir, "produced") if (daps_dir / "produced").is_dir() else {}
        policy = self.excerpt_policy
        order = {s: i for i, s in enumerate(SPEAKERS)}
        for (speaker, script), path in sorted(files.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][0], kv[0][1])):
            if split != "all" and split_of(speaker) != split:
                continue
            pair = {"clean": str(clean[(speaker, script)]) if (speaker, script) in clean else None,
                    "produced": str(produced[(speaker, script)]) if (speaker, script) in produced else None}
            if self.version in DEVICE_VERSIONS:
                pair["device"] = str(path)
            item = Item(id=f"{self.version}/{speaker}_{script}", path=str(path), domain="speech", dataset=self.name,
                        split=split, speaker=speaker,
                        extra={"script": script, "version": self.version, "pair": pair})
            yield apply_excerpt(item, policy)

    def pairs(self, split: str | None = None, root: str | Path | None = None,
              device: str | None = None) -> list[dict[str, str | None]]:
        """Aligned files per speaker/script: clean, produced and (with ``device``) that device version."""
        split = self.check_split(split)
        daps_dir = self.locate(split, root)
        clean, produced = self._files(daps_dir, "clean"), self._files(daps_dir, "produced")
        dev = self._files(daps_dir, device) if device else {}
        out = []
        for key in sorted(set(clean) | set(produced)):
            if split != "all" and split_of(key[0]) != split:
                continue
            row = {"speaker": key[0], "script": key[1], "clean": str(clean[key]) if key in clean else None,
                   "produced": str(produced[key]) if key in produced else None}
            if device:
                row["device"] = str(dev[key]) if key in dev else None
            out.append(row)
        return out

    def resources(self, split: str) -> list[tuple[str, Resource]]:
        """The one Zenodo archive, which holds every split and version."""
        return [("daps", DAPS_RESOURCE)]


DAPS = register_dataset(DAPSDataset())
