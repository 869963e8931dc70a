"""The training data pipeline shared by the in-repo codecs.

* **Scanning**: audio files under one or more folders, each file in a *group* (domain). A folder that
  contains ``speech/``, ``music/`` or ``general/`` sub-folders gives one group per sub-folder; any
  other folder is one group named after itself; ``NAME=DIR`` names the group explicitly.
* **Hold-out**: a deterministic part of every group is kept for validation (chosen by a hash of the
  path, so it does not depend on scan order or machine). Stems that share a small folder (a song's
  ``guitar.ogg`` and ``song.ogg``, in a sub-folder of at most 4 audio files) are held out together,
  so no song leaks into training. Files with identical content share one unit too
  (``bench.train.overlap.share_units_of_copies``, applied by the trainer before the split).
* **Files**: the datasets' walker and extension policy (``bench.datasets._common``), less the types
  listed at :data:`TRAINING_EXTENSIONS`.
* **Excerpts**: random 0.38 s excerpts (DAC's ``sample_duration``), mixed to mono, resampled with the
  harness's one resampler, rejected when quieter than -40 LUFS (DAC's salient excerpts), normalised to
  -16 LUFS (measured on a 1 s context, since BS.1770 needs 400 ms blocks), then a random constant phase
  rotation in [-pi, pi] of every frequency (audiotools' ``ShiftPhase``: multiply the spectrum by
  ``exp(i phi)``; phi = pi is a polarity flip), then rescaled if the peak exceeds 1.
* **Balance**: every batch cycles through the groups, so each batch of at least as many items as
  groups sees every domain (DAC balances its speech/music/general loaders the same way).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from bench.audio import (
    AudioError,
    load_audio,
    loudness_lufs,
    normalize_loudness,
    resample,
    to_channels,
)
from bench.datasets._common import AUDIO_EXTENSIONS as DATASET_EXTENSIONS
from bench.datasets._common import DOMAINS as DOMAIN_NAMES
from bench.datasets._common import audio_files
from bench.errors import UserError

#: The file types a training scan takes: the datasets' audio extensions (``bench.datasets._common``,
#: the one extension policy) less the MP4/AAC family (``.m4a``, ``.mp4``, ``.aac``) and ``.oga``.
#: Those have no soundfile reader, so every random excerpt would decode the file from its start
#: through PyAV; and adding them would change the file list, hence the hold-out split, of corpora
#: already trained on (a resumed run must see the split it started with). Pass ``extensions=`` to
#: :func:`scan` to choose otherwise.
TRAINING_EXTENSIONS: tuple[str, ...] = tuple(e for e in DATASET_EXTENSIONS
                                             if e not in (".m4a", ".mp4", ".aac", ".oga"))
STEM_FOLDER_MAX_FILES = 4


class TrainingDataError(UserError, FileNotFoundError):
    """Training data that cannot be used as given (a missing folder, no audio in it, nothing to validate on)."""


@dataclass(frozen=True)
class AudioFile:
    """One training file: its path, group (domain), hold-out unit, and basic stream facts."""

    path: str
    group: str
    unit: str  # the hold-out unit: the file, or its folder for small stem folders
    duration_s: float
    sample_rate_hz: int
    channels: int
    rel_path: str = ""  # POSIX path below its ``--data`` folder (for overlap checks); "" when unknown

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready)."""
        return asdict(self)


def _groups_of(spec: str) -> tuple[Path, list[tuple[str, Path]]]:
    """``DIR`` or ``NAME=DIR`` -> (the data folder, [(group, folder)])."""
    if "=" in spec and not Path(spec).exists():
        name, folder = spec.split("=", 1)
        return Path(folder), [(name, Path(folder))]
    root = Path(spec)
    if not root.is_dir():
        raise TrainingDataError(f"training data folder not found: {spec}")
    domains = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name in DOMAIN_NAMES]
    if domains:
        return root, [(d.name, d) for d in domains]
    return root, [(root.name, root)]


def _info(path: Path) -> tuple[float, int, int]:
    """(duration in s, sample rate, channels) from the header (a full decode for formats soundfile lacks)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return float(info.duration), int(info.samplerate), int(info.channels)
    except Exception:  # noqa: BLE001 - formats soundfile cannot read go through bench.audio
        audio = load_audio(path)
        return audio.duration_s, audio.sample_rate_hz, audio.num_channels


def _group_files(group: str, folder: Path, root: Path, extensions: Iterable[str], min_duration_s: float
                 ) -> list[AudioFile]:
    """The usable files of one group folder, with their hold-out units (small stem folders as one unit)."""
    paths = audio_files(folder, extensions)
    per_folder: dict[Path, int] = defaultdict(int)
    for p in paths:
        per_folder[p.parent] += 1
    files = []
    for p in paths:
        try:
            duration_s, sr, ch = _info(p)
        except (AudioError, RuntimeError) as exc:
            raise AudioError(f"{p}: cannot read for training ({exc})") from exc
        if duration_s < min_duration_s:
            continue
        small_folder = p.parent != folder and per_folder[p.parent] <= STEM_FOLDER_MAX_FILES
        unit_path = p.parent if small_folder else p
        unit = f"{group}/{unit_path.relative_to(folder).as_posix()}"
        files.append(AudioFile(str(p), group, unit, duration_s, sr, ch, p.relative_to(root).as_posix()))
    return files


def scan(data: list[str], min_duration_s: float = 0.1, extensions: Iterable[str] = TRAINING_EXTENSIONS
         ) -> list[AudioFile]:
    """Find the audio files under ``data`` folders, with their groups and hold-out units.

    Folders are walked by the datasets' walker (``bench.datasets._common.audio_files``: sorted,
    hidden files skipped, each real file once, no symlink loops); ``extensions`` defaults to
    :data:`TRAINING_EXTENSIONS`.
    """
    extensions = tuple(extensions)
    files: list[AudioFile] = []
    for spec in data:
        root, groups = _groups_of(spec)
        for group, folder in groups:
            files += _group_files(group, folder, root, extensions, min_duration_s)
    if not files:
        raise TrainingDataError(f"no audio files ({', '.join(sorted(extensions))}) under {data}")
    return files


def _unit_key(unit: str) -> str:
    """The hash that orders units for the hold-out choice (independent of scan order and machine)."""
    return hashlib.sha1(unit.encode()).hexdigest()


def split_holdout(files: list[AudioFile], fraction: float = 0.02, min_units: int = 1
                  ) -> tuple[list[AudioFile], list[AudioFile]]:
    """(train, validation): per group, the units with the smallest path hashes go to validation."""
    by_group: dict[str, set[str]] = defaultdict(set)
    for f in files:
        by_group[f.group].add(f.unit)
    held: set[str] = set()
    for group, units in by_group.items():
        if len(units) < 2:
            continue  # a group with one unit cannot spare it
        n = min(len(units) - 1, max(min_units, round(fraction * len(units))))
        held.update(sorted(units, key=_unit_key)[:n])
    train = [f for f in files if f.unit not in held]
    val = [f for f in files if f.unit in held]
    return train, val


def phase_shift(x: np.ndarray, phi: float) -> np.ndarray:
    """Rotate the phase of every frequency of ``[..., T]`` by ``phi`` radians (constant phase shift)."""
    spec = np.fft.rfft(x, axis=-1) * np.exp(1j * phi)
    return np.fft.irfft(spec, n=x.shape[-1], axis=-1).astype(np.float32)


def read_mono(f: AudioFile, sample_rate_hz: int, start_s: float, duration_s: float) -> np.ndarray:
    """``[T]`` mono float32 at ``sample_rate_hz`` for ``duration_s`` from ``start_s`` (zero-padded)."""
    audio = load_audio(f.path, start_s=start_s, duration_s=duration_s)
    x = to_channels(audio.samples, 1, "mono")
    x = resample(x, audio.sample_rate_hz, sample_rate_hz)[0]
    n = int(round(duration_s * sample_rate_hz))
    if x.shape[-1] < n:
        x = np.pad(x, (0, n - x.shape[-1]))
    return x[:n]


class ExcerptSampler:
    """Random, loudness-normalised, phase-shifted excerpts, balanced across groups."""

    def __init__(self, files: list[AudioFile], sample_rate_hz: int, excerpt_s: float = 0.38,
                 target_lufs: float = -16.0, loudness_cutoff_lufs: float = -40.0, context_s: float = 1.0,
                 phase_shift: bool = True, seed: int = 0, max_tries: int = 8) -> None:
        if not files:
            raise ValueError("no training files")
        self.sample_rate_hz = sample_rate_hz
        self.excerpt_s = excerpt_s
        self.target_lufs = target_lufs
        self.loudness_cutoff_lufs = loudness_cutoff_lufs
        self.context_s = max(context_s, excerpt_s, 0.4)
        self.phase_shift = phase_shift
        self.max_tries = max_tries
        self.rng = random.Random(seed)
        self.groups: dict[str, list[AudioFile]] = defaultdict(list)
        for f in files:
            self.groups[f.group].append(f)
        self.group_names = sorted(self.groups)

    @property
    def excerpt_samples(self) -> int:
        """Samples per excerpt at the sampler's rate."""
        return int(round(self.excerpt_s * self.sample_rate_hz))

    def _candidate(self, f: AudioFile) -> tuple[np.ndarray, float]:
        """A random context window of ``f`` and its loudness."""
        start_s = self.rng.uniform(0.0, max(0.0, f.duration_s - self.context_s))
        ctx = read_mono(f, self.sample_rate_hz, start_s, self.context_s)
        return ctx, loudness_lufs(ctx[None], self.sample_rate_hz)

    def excerpt(self, group: str) -> np.ndarray:
        """One excerpt ``[T]`` from a random file of ``group``."""
        best: tuple[np.ndarray, float] | None = None
        for _ in range(self.max_tries):
            f = self.rng.choice(self.groups[group])
            ctx, lufs = self._candidate(f)
            if best is None or lufs > best[1]:
                best = (ctx, lufs)
            if lufs > self.loudness_cutoff_lufs:
                break
        if best is None:
            raise ValueError("ExcerptSampler needs max_tries >= 1")
        ctx, lufs = best
        if math.isfinite(lufs):
            ctx, _ = normalize_loudness(ctx[None], self.sample_rate_hz, self.target_lufs)
            ctx = ctx[0]
        n = self.excerpt_samples
        offset = self.rng.randint(0, ctx.shape[-1] - n)
        x = ctx[offset : offset + n]
        if self.phase_shift:
            x = phase_shift(x, self.rng.uniform(-math.pi, math.pi))
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > 1.0:
            x = x / peak
        return x.astype(np.float32)

    def batch_groups(self, batch_size: int) -> list[str]:
        """Groups of the items of one batch: a cycle through all groups from a random starting group."""
        start = self.rng.randrange(len(self.group_names))
        return [self.group_names[(start + i) % len(self.group_names)] for i in range(batch_size)]

    def batch(self, batch_size: int) -> torch.Tensor:
        """``[B, 1, T]`` excerpts, balanced across groups (see :meth:`batch_groups`)."""
        items = [self.excerpt(group) for group in self.batch_groups(batch_size)]
        return torch.from_numpy(np.stack(items))[:, None, :]


def read_normalised(f: AudioFile, sample_rate_hz: int, start_s: float, duration_s: float,
                    target_lufs: float | None) -> tuple[np.ndarray, bool]:
    """(``[T]`` mono samples, audible): read like :func:`read_mono`, then loudness-normalise to
    ``target_lufs`` when the audio has a finite loudness (``audible``; silence is returned as read).
    ``target_lufs=None`` keeps the stored level."""
    x = read_mono(f, sample_rate_hz, start_s, duration_s)
    audible = math.isfinite(loudness_lufs(x[None], sample_rate_hz))
    if audible and target_lufs is not None:
        x = normalize_loudness(x[None], sample_rate_hz, target_lufs)[0][0]
    return x, audible


def load_holdout(path: str | Path) -> list[AudioFile]:
    """The held-out files a training run recorded in its ``holdout.json``."""
    files = []
    for entry in json.loads(Path(path).read_text())["held_out_files"]:
        duration_s, sr, ch = _info(Path(entry["path"]))
        files.append(AudioFile(entry["path"], entry["group"], entry["path"], duration_s, sr, ch))
    return files


def validation_clips(files: list[AudioFile], sample_rate_hz: int, duration_s: float = 3.0,
                     per_group: int = 6, target_lufs: float = -16.0) -> tuple[torch.Tensor, list[dict]]:
    """Fixed validation excerpts ``[N, 1, T]``: the middle ``duration_s`` of up to ``per_group`` held-out
    files per group, loudness-normalised; with a description of each clip for the card."""
    by_group: dict[str, list[AudioFile]] = defaultdict(list)
    for f in sorted(files, key=lambda f: _unit_key(f.path)):
        by_group[f.group].append(f)
    clips, described = [], []
    for group in sorted(by_group):
        for f in by_group[group][:per_group]:
            start_s = max(0.0, (f.duration_s - duration_s) / 2)
            x, audible = read_normalised(f, sample_rate_hz, start_s, duration_s, target_lufs)
            if not audible:
                continue
            clips.append(x)
            described.append({"path": f.path, "group": group, "start_s": round(start_s, 3),
                              "duration_s": duration_s})
    if not clips:
        raise TrainingDataError("no usable validation audio: nothing was held out (each group needs at least two "
                         "files or stem folders) or the held-out files are silent")
    return torch.from_numpy(np.stack(clips))[:, None, :], described


# Licences of corpora we know by folder name (from ../shared/audio/README.md); a card names them.
KNOWN_CORPORA = {
    "librispeech": "LibriSpeech (CC BY 4.0)",
    "vctk": "VCTK (ODC-By 1.0)",
    "ljspeech": "LJ Speech (public domain)",
    "fretsonfire": "Frets on Fire songs by Muldjord (CC BY-SA 3.0)",
    "esc10": "ESC-10 (CC0 or CC BY 3.0 per clip, see its README)",
    "esc50": "ESC-50 (CC BY-NC 3.0)",
    "daps": "DAPS (CC BY-NC 4.0)",
    "musdb": "MUSDB18 (research use, see its licence)",
}


def describe_data(files: list[AudioFile], data: list[str]) -> dict:
    """Summary for a checkpoint card: folders, per-group counts and hours, recognised licences."""
    groups: dict[str, dict[str, float]] = {}
    licences: set[str] = set()
    for f in files:
        g = groups.setdefault(f.group, {"files": 0, "hours": 0.0})
        g["files"] += 1
        g["hours"] += f.duration_s / 3600.0
        low = f.path.lower()
        licences.update(text for key, text in KNOWN_CORPORA.items() if key in low)
    for g in groups.values():
        g["hours"] = round(g["hours"], 3)
    return {"folders": [str(Path(d.split("=", 1)[-1]).resolve()) if "=" in d and not Path(d).exists()
                        else str(Path(d).resolve()) for d in data],
            "groups": groups, "licences": sorted(licences)}
