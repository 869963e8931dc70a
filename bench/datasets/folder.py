"""``folder``: any directory of audio files, the way a user benchmarks on their own data.

    bench run --codecs opus --dataset folder --root ~/my-clips --dataset-opt domain=music

* Files: every audio file under ``--root`` (recursively; hidden files and folders skipped),
  sorted by relative path. Item id = relative path without extension (``sub/clip``), stable
  across machines as long as the tree is the same. Each real file is listed once, and no
  symlink loop is followed (the rules of :mod:`bench.fswalk`).
* Split: ``all`` (default) is the whole folder; any other split name selects the sub-folder of
  that name (``--split test`` reads ``ROOT/test``).
* Domain (speech, music or general; it decides which metrics apply): option ``domain=...``, else
  the environment variable ``BENCH_FOLDER_DOMAIN``, else the first path component when it is
  named ``speech``, ``music`` or ``general``. A file whose domain cannot be told is an error that
  names it: a wrong guess would silently run PESQ on music or skip it on speech.
* Transcripts: a sidecar ``<name>.txt`` next to ``<name>.wav`` (``<name>.normalized.txt`` also
  accepted) becomes the item's transcript, for WER/CER.
* Options (``--dataset-opt key=value``): ``domain``; ``speaker=parent`` to use each file's
  parent folder name as the speaker (clusters for the bootstrap); ``excerpt_s=10`` to score
  reproducible loudness-gated 10 s excerpts instead of whole files (the protocol of
  ``bench.datasets.protocol``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from bench.datasets._common import (
    DOMAINS,
    Configurable,
    DatasetOptionError,
    audio_files,
    parse_optional_float,
    read_text,
)
from bench.datasets.base import DataMissingError, Item, register_dataset
from bench.datasets.protocol import WHOLE, ExcerptPolicy, apply_excerpt

DOMAIN_ENV = "BENCH_FOLDER_DOMAIN"


class FolderDataset(Configurable):
    """Every audio file under ``--root`` (or its sub-folder named by the split), with sidecar transcripts."""

    name = "folder"
    splits = ()  # any sub-folder name is a split
    default_split = "all"
    domains = DOMAINS
    description = "a directory of your own audio (--root DIR, --dataset-opt domain=speech|music|general)"
    licence = "yours"
    option_defaults = {"domain": None, "speaker": None, "excerpt_s": None}

    def validate_options(self) -> None:
        """Check ``domain`` and ``speaker`` and parse ``excerpt_s`` (seconds or none)."""
        domain = self.options.get("domain")
        if domain is not None and domain not in DOMAINS:
            raise DatasetOptionError(f"folder: domain={domain!r}; choose one of {', '.join(DOMAINS)}")
        if self.options.get("speaker") not in (None, "parent"):
            raise DatasetOptionError(f"folder: speaker={self.options['speaker']!r}; the only choice is 'parent'")
        self.options["excerpt_s"] = parse_optional_float("excerpt_s", self.options.get("excerpt_s"))

    @property
    def excerpt_policy(self) -> ExcerptPolicy:
        """Loudness-gated excerpts of ``excerpt_s`` seconds, or whole files when the option is unset."""
        excerpt_s = self.options.get("excerpt_s")
        return ExcerptPolicy(duration_s=float(excerpt_s)) if excerpt_s else WHOLE

    def _domain_for(self, rel: Path) -> str:
        domain = self.options.get("domain") or os.environ.get(DOMAIN_ENV)
        if domain:
            if domain not in DOMAINS:
                raise DatasetOptionError(f"folder: domain {domain!r} (from ${DOMAIN_ENV}?) is not one of {DOMAINS}")
            return domain
        if len(rel.parts) > 1 and rel.parts[0] in DOMAINS:
            return rel.parts[0]
        raise DatasetOptionError(
            f"folder: cannot tell the domain of {rel.as_posix()}; pass --dataset-opt domain=speech|music|general "
            f"(or set ${DOMAIN_ENV}, or put files under speech/, music/, general/ sub-folders)")

    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """One item per audio file, sorted by relative path; two files sharing an id are an error."""
        split = split or self.default_split
        if root is None:
            raise DataMissingError("the folder dataset reads your own audio: pass --root DIR (the folder to benchmark)")
        base = Path(root).expanduser()
        directory = base if split == "all" else base / split
        if not directory.is_dir():
            raise DataMissingError(f"folder: {directory} is not a directory"
                                   + ("" if split == "all" else f" (split {split!r} = that sub-folder of --root)"))
        files = audio_files(directory)
        if not files:
            raise DataMissingError(f"folder: no audio files under {directory}")
        seen: dict[str, Path] = {}
        policy = self.excerpt_policy
        for path in files:
            rel = path.relative_to(directory)
            item_id = rel.with_suffix("").as_posix()
            if item_id in seen:
                raise DatasetOptionError(f"folder: {seen[item_id]} and {path} would share the id {item_id!r}; rename one")
            seen[item_id] = path
            transcript = None
            for sidecar in (path.with_suffix(".txt"), path.with_suffix(".normalized.txt")):
                if sidecar.is_file():
                    transcript = read_text(sidecar)
                    break
            speaker = path.parent.name if self.options.get("speaker") == "parent" and len(rel.parts) > 1 else None
            item = Item(id=item_id, path=str(path), domain=self._domain_for(rel), dataset=self.name, split=split,
                        transcript=transcript, speaker=speaker)
            yield apply_excerpt(item, policy)


FOLDER = register_dataset(FolderDataset())
