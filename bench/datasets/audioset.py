"""``audioset``: AudioSet clips (Gemmeke et al., 2017), general sound, 10 s YouTube segments.

AudioSet publishes labels, not audio: researchers hold a local folder of clips they fetched, or
use a Hugging Face copy. Both are supported.

**Local folder** (default, ``--dataset-opt source=local``)::

    <root>/audioset/eval_segments.csv                the official segment CSVs
    <root>/audioset/balanced_train_segments.csv
    <root>/audioset/class_labels_indices.csv          mid -> display name (optional)
    <root>/audioset/eval_segments/<clip>.<ext>        one file per segment (also accepted:
    <root>/audioset/balanced_train_segments/...        eval/, audio/eval_segments/, data/eval_segments/)

A clip file is matched to its CSV row by YouTube id: ``<YTID>.wav``, ``Y<YTID>.wav``,
``<YTID>_<start>...`` all work (ids are 11 characters). Rows without a file are counted and
reported by ``bench data verify`` (many videos are gone from YouTube); files that are not in the
CSV are ignored.

**Hugging Face** (``--dataset-opt source=hf``): ``hf=`` a directory written by
``Dataset.save_to_disk``, a folder of parquet files, or a hub id (default ``agkphysics/AudioSet``;
``eval`` = its ``test`` split). Audio bytes are written once to the cache directory so the runner
reads files like any other dataset. ``bench data download audioset --split eval`` fetches the
CSVs from Google and exports the Hugging Face copy into the local-folder layout above.

* Splits: ``eval`` (DAC's general-sound test set), ``balanced_train``, ``unbalanced_train``.
* Items: id = YouTube id; labels (mids and names) in ``extra``; domain ``general`` (DAC treats
  AudioSet so), or with ``domain=by-label``: ``speech`` for clips labelled Speech and not Music,
  ``music`` for Music and not Speech, else ``general``.
* Excerpts: segments are at most 10 s, so each clip is used whole (the 10 s policy of
  ``bench.datasets.protocol`` applies, decided from the CSV times without decoding).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any, Iterator

from bench.datasets._common import Configurable, DatasetOptionError, Downloadable, audio_files, missing_data
from bench.datasets.base import DataMissingError, Item, register_dataset
from bench.datasets.download import Resource
from bench.datasets.protocol import ExcerptPolicy, apply_excerpt

SPLITS = ("eval", "balanced_train", "unbalanced_train")
CSV_BASE = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv"
HF_DEFAULT = "agkphysics/AudioSet"
HF_SPLITS = {"eval": ("balanced", "test"), "balanced_train": ("balanced", "train"),
             "unbalanced_train": ("unbalanced", "train")}
SPEECH_MID = "/m/09x0r"
MUSIC_MID = "/m/04rlf"
YTID_LEN = 11
EXCERPT = ExcerptPolicy(duration_s=10.0)


def read_segments_csv(path: str | Path) -> dict[str, dict[str, Any]]:
    """Parse an official segments CSV: ytid -> {start_s, end_s, labels}. Comment lines start with '#'."""
    rows: dict[str, dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        lines = (line for line in f if line.strip() and not line.lstrip().startswith("#"))
        for n, row in enumerate(csv.reader(lines, skipinitialspace=True), 1):
            if len(row) < 4:
                raise ValueError(f"{path}: line {n}: expected 'YTID, start_seconds, end_seconds, positive_labels', got {row}")
            try:
                start, end = float(row[1]), float(row[2])
            except ValueError as exc:
                raise ValueError(f"{path}: line {n}: bad times {row[1]!r}, {row[2]!r}") from exc
            rows[row[0].strip()] = {"start_s": start, "end_s": end,
                                    "labels": [m.strip() for m in row[3].split(",") if m.strip()]}
    return rows


def read_label_names(path: str | Path) -> dict[str, str]:
    """class_labels_indices.csv: mid -> display name."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["mid"]: row["display_name"] for row in csv.DictReader(f)}


def ytid_candidates(stem: str) -> list[str]:
    """Possible YouTube ids in a clip file name (``abc``, ``Yabc``, ``abc_30.000_40.000``)."""
    out = [stem]
    if len(stem) >= YTID_LEN:
        out.append(stem[:YTID_LEN])
    if stem.startswith("Y") and len(stem) >= YTID_LEN + 1:
        out += [stem[1:], stem[1:YTID_LEN + 1]]
    return out


def _sniff_extension(data: bytes, fallback: str = ".bin") -> str:
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:4] == b"RIFF":
        return ".wav"
    if data[:4] == b"OggS":
        return ".ogg"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0):
        return ".mp3"
    if data[4:8] == b"ftyp":
        return ".m4a"
    return fallback


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class AudioSetDataset(Configurable, Downloadable):
    """AudioSet segments from a local folder with the official CSVs, or exported from a Hugging Face copy."""

    name = "audioset"
    splits = SPLITS
    default_split = "eval"
    domains = ("general", "speech", "music")
    description = "AudioSet 10 s clips (local folder + official CSVs, or a Hugging Face copy); eval = DAC's general set"
    licence = "labels CC BY 4.0; audio per YouTube uploader"
    option_defaults = {"source": "local", "hf": HF_DEFAULT, "domain": "general"}
    excerpt_policy = EXCERPT
    source_note = "AudioSet audio is not distributed by Google; the download exports the Hugging Face copy."

    def validate_options(self) -> None:
        """Check ``source`` (local or hf) and ``domain`` (general or by-label)."""
        if self.options["source"] not in ("local", "hf"):
            raise DatasetOptionError(f"audioset: source={self.options['source']!r}; choose local or hf")
        if self.options["domain"] not in ("general", "by-label"):
            raise DatasetOptionError(f"audioset: domain={self.options['domain']!r}; choose general or by-label")

    def _domain(self, labels: list[str]) -> str:
        if self.options["domain"] != "by-label":
            return "general"
        speech, music = SPEECH_MID in labels, MUSIC_MID in labels
        return "speech" if speech and not music else "music" if music and not speech else "general"

    # -- local folder ---------------------------------------------------------------------

    def locate(self, split: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
        """(segments CSV, audio directory) for a split, or DataMissingError."""
        from bench.config import data_root

        base = data_root(root, self.name)
        csv_name = f"{split}_segments.csv"
        for d in (base / "audioset", base / "AudioSet", base):
            if (d / csv_name).is_file():
                for sub in (f"{split}_segments", split, f"audio/{split}_segments", f"data/{split}_segments",
                            f"audio/{split}"):
                    if (d / sub).is_dir():
                        return d / csv_name, d / sub
                raise missing_data(self.name, split, d, f"found {csv_name} but no {split}_segments/ folder of clips",
                                   explicit_root=root)
        raise missing_data(self.name, split, base, f"no audioset/{csv_name}", explicit_root=root)

    def _local_items(self, split: str, root: str | Path | None) -> Iterator[Item]:
        csv_path, audio_dir = self.locate(split, root)
        segments = read_segments_csv(csv_path)
        names_path = csv_path.parent / "class_labels_indices.csv"
        names = read_label_names(names_path) if names_path.is_file() else {}
        seen: set[str] = set()
        for path in audio_files(audio_dir):
            ytid = next((c for c in ytid_candidates(path.stem) if c in segments), None)
            if ytid is None or ytid in seen:
                continue
            seen.add(ytid)
            yield self._item(split, ytid, str(path), segments[ytid], names)

    def _item(self, split: str, ytid: str, path: str, seg: dict[str, Any], names: dict[str, str]) -> Item:
        labels = list(seg.get("labels") or [])
        extra = {"labels": labels, "label_names": [names.get(m, m) for m in labels]}
        if seg.get("start_s") is not None:
            extra["segment_s"] = [seg["start_s"], seg["end_s"]]
        if seg.get("label_names"):
            extra["label_names"] = list(seg["label_names"])
        item = Item(id=ytid, path=path, domain=self._domain(labels), dataset=self.name, split=split, extra=extra)
        hint = seg["end_s"] - seg["start_s"] if seg.get("start_s") is not None else None
        return apply_excerpt(item, self.excerpt_policy, duration_hint_s=hint)

    # -- Hugging Face ---------------------------------------------------------------------

    def load_hf(self, split: str, source: str | None = None) -> Any:
        """The Hugging Face dataset for a split, audio left undecoded (bytes + path)."""
        try:
            import datasets
        except ImportError as exc:
            raise DataMissingError("audioset source=hf needs the 'datasets' package: pip install 'bench[hf]'") from exc
        source = source or self.options["hf"]
        path = Path(source).expanduser()
        if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[HF_SPLITS[split][1]] if HF_SPLITS[split][1] in ds else ds[split]
        elif path.is_dir() or path.suffix == ".parquet":
            files = sorted(str(p) for p in (path.rglob("*.parquet") if path.is_dir() else [path]))
            if not files:
                raise DataMissingError(f"audioset: no parquet files under {path}")
            split_files = [f for f in files if f"/{HF_SPLITS[split][1]}" in f.replace(os.sep, "/")
                           or f"/{split}" in f.replace(os.sep, "/")]
            ds = datasets.load_dataset("parquet", data_files=split_files or files, split="train")
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not path.exists():  # a hub id: owner/name
            config, hf_split = HF_SPLITS[split]
            try:
                ds = datasets.load_dataset(source, config, split=hf_split)
            except Exception as exc:  # noqa: BLE001 - network, auth, or a wrong id: one clear message
                raise DataMissingError(f"audioset: cannot load {source!r} ({config}/{hf_split}) from the Hugging Face "
                                       f"hub: {type(exc).__name__}: {exc}") from exc
        else:
            raise DataMissingError(f"audioset: hf={source!r} is neither a saved dataset, parquet files, nor a hub id")
        if "audio" not in ds.column_names:
            raise DataMissingError(f"audioset: {source} has no 'audio' column (columns: {ds.column_names})")
        if isinstance(ds.features["audio"], datasets.Audio):
            ds = ds.cast_column("audio", datasets.Audio(decode=False))
        return ds

    @staticmethod
    def _hf_row_fields(row: dict[str, Any]) -> tuple[str, list[str], list[str]]:
        ytid = next((str(row[k]) for k in ("video_id", "ytid", "YTID", "id") if row.get(k) is not None), None)
        if ytid is None:
            raise DataMissingError(f"audioset: a Hugging Face row has no video_id/ytid column: {sorted(row)}")
        labels = row.get("labels", row.get("positive_labels")) or []
        if isinstance(labels, str):
            labels = [m.strip() for m in labels.split(",") if m.strip()]
        names = row.get("human_labels", row.get("label_names")) or []
        return ytid, [str(m) for m in labels], [str(n) for n in names]

    @staticmethod
    def _audio_bytes(audio: Any, sample_rate_hint: int | None = None) -> tuple[bytes, str]:
        """(encoded bytes, extension) from an undecoded (bytes/path) or decoded (array) audio cell."""
        if isinstance(audio, dict) and audio.get("bytes"):
            data = audio["bytes"]
            return data, _sniff_extension(data, Path(audio.get("path") or "x.bin").suffix or ".bin")
        if isinstance(audio, dict) and audio.get("path") and Path(audio["path"]).is_file():
            data = Path(audio["path"]).read_bytes()
            return data, _sniff_extension(data, Path(audio["path"]).suffix)
        if isinstance(audio, dict) and audio.get("array") is not None:
            import numpy as np
            import soundfile as sf

            buf = io.BytesIO()
            sf.write(buf, np.asarray(audio["array"], dtype=np.float32).T, int(audio["sampling_rate"]), format="FLAC")
            return buf.getvalue(), ".flac"
        raise ValueError("audio cell holds neither bytes, a readable path, nor an array")

    def export_hf(self, split: str, out_dir: Path, source: str | None = None,
                  progress: bool = False) -> list[dict[str, Any]]:
        """Write every clip of the HF copy to ``out_dir/<ytid>.<ext>`` (atomic, skip existing); return rows."""
        from tqdm import tqdm

        ds = self.load_hf(split, source)
        rows = []
        for row in tqdm(ds, total=len(ds), desc=f"audioset/{split}", disable=not progress, leave=False):
            ytid, labels, names = self._hf_row_fields(row)
            existing = [p for p in out_dir.glob(f"{ytid}.*") if not p.name.startswith(".")] if out_dir.is_dir() else []
            if existing:
                path = existing[0]
            else:
                try:
                    data, ext = self._audio_bytes(row["audio"])
                except ValueError as exc:
                    raise DataMissingError(f"audioset: clip {ytid} in {source or self.options['hf']}: {exc}") from exc
                path = out_dir / f"{ytid}{ext}"
                _write_atomic(path, data)
            rows.append({"ytid": ytid, "path": str(path), "labels": labels, "label_names": names})
        return rows

    def _hf_items(self, split: str) -> Iterator[Item]:
        from bench.config import cache_dir

        source = self.options["hf"]
        key = hashlib.sha256(f"{Path(source).expanduser().resolve() if Path(source).expanduser().exists() else source}"
                             .encode()).hexdigest()[:16]
        out_dir = cache_dir() / "hf-audio" / "audioset" / key / split
        for row in self.export_hf(split, out_dir, source):
            seg = {"labels": row["labels"], "label_names": row["label_names"]}
            yield self._item(split, row["ytid"], row["path"], seg, {})

    # -- the interface --------------------------------------------------------------------

    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """Clips of a split that have audio (local folder or HF export), in file order, each used whole."""
        split = self.check_split(split)
        if self.options["source"] == "hf":
            yield from self._hf_items(split)
        else:
            yield from self._local_items(split, root)

    def missing_rows(self, split: str | None = None, root: str | Path | None = None) -> tuple[int, int]:
        """(rows in the CSV, rows with a clip on disk) for a local split."""
        split = self.check_split(split)
        csv_path, _ = self.locate(split, root)
        return len(read_segments_csv(csv_path)), sum(1 for _ in self._local_items(split, root))

    def resources(self, split: str) -> list[tuple[str, Resource]]:
        """The split's segments CSV and the label names CSV from Google (no audio: that comes from HF)."""
        # Google publishes no checksums for the CSVs; the download parses them (structure check).
        return [(f"audioset-{name}", Resource(url=f"{CSV_BASE}/{name}.csv", filename=f"{name}.csv", unpack=False,
                                               unpack_to="audioset", provides=f"audioset/{name}.csv"))
                for name in (f"{split}_segments", "class_labels_indices")]

    def download(self, split: str | None = None, root: str | os.PathLike | None = None, *, progress: bool = True,
                 keep_archive: bool = False, mirror: str | None = None, force: bool = False) -> list[str]:
        """CSVs from Google (parsed to check them), then clips exported from the Hugging Face copy."""
        from bench.config import data_root

        split = self.check_split(split)
        lines = super().download(split, root, progress=progress, keep_archive=keep_archive, mirror=mirror, force=force)
        base = data_root(root, self.name) / "audioset"
        segments = read_segments_csv(base / f"{split}_segments.csv")  # raises on a corrupt CSV
        read_label_names(base / "class_labels_indices.csv")
        out_dir = base / f"{split}_segments"
        rows = self.export_hf(split, out_dir, self.options["hf"], progress=progress)
        in_csv = sum(1 for r in rows if r["ytid"] in segments)
        lines.append(f"audioset/{split}: {len(rows)} clips from {self.options['hf']} in {out_dir} "
                     f"({in_csv} of {len(segments)} CSV segments covered)")
        return lines

    def verify(self, split: str | None = None, root: str | Path | None = None,
               progress: bool = False) -> tuple[bool, list[str]]:
        """The common checks, plus (local source) how many CSV segments have a clip on disk."""
        ok, lines = super().verify(split, root, progress)
        if self.options["source"] == "local":
            total, present = self.missing_rows(split, root)
            lines.insert(1, f"{present} of {total} CSV segments have a clip ({total - present} missing, "
                            f"usually videos removed from YouTube)")
        return ok, lines


AUDIOSET = register_dataset(AudioSetDataset())
