"""Audio handling in one place: reading, resampling, channel policy, length alignment, loudness.

* Reading: soundfile for WAV/FLAC/Ogg/MP3 (libsndfile >= 1.1), PyAV for what soundfile cannot read
  (MP4/M4A, ``.stem.mp4``, odd MP3s). Always float32 in [-1, 1], shape ``[C, T]``.
* Resampling: soxr ("HQ") and nothing else, so every rate change in the harness is the same filter.
* Channel policy: ``"mono"`` (default) averages channels, as ViSQOL and DAC's evaluation do;
  ``"first"`` keeps channel 0; ``"keep"`` leaves them; a codec that needs N channels gets exactly N
  (mono is duplicated, more channels are mixed down).
* Loudness: optional normalisation to -16 LUFS (DAC's protocol) with pyloudnorm, gain clipped so
  the peak stays below 1.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import UserError

SOXR_QUALITY = "HQ"
CHANNEL_POLICIES = ("mono", "first", "keep")


class AudioError(UserError, ValueError):
    """Audio that cannot be read or used; the message names the file."""


@dataclass
class Audio:
    """Decoded audio: float32 samples ``[C, T]`` and their rate, as every loader returns it."""

    samples: np.ndarray  # float32 [C, T]
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        """Length in seconds (samples / rate)."""
        return self.samples.shape[-1] / float(self.sample_rate_hz)

    @property
    def num_channels(self) -> int:
        """Number of channels C (first axis of ``samples``)."""
        return self.samples.shape[0]


def _read_soundfile(path: str, start_s: float, duration_s: float | None) -> Audio:
    import soundfile as sf

    with sf.SoundFile(path) as f:
        sr = f.samplerate
        start = int(round(start_s * sr))
        frames = -1 if duration_s is None else int(round(duration_s * sr))
        if start:
            f.seek(start)
        data = f.read(frames=frames, dtype="float32", always_2d=True)
    return Audio(np.ascontiguousarray(data.T), sr)


def _read_pyav(path: str, start_s: float, duration_s: float | None, stream_index: int = 0) -> Audio:
    import av

    try:
        container = av.open(path)
    except Exception as exc:  # noqa: BLE001
        raise AudioError(f"{path}: cannot open ({exc})") from exc
    with container:
        streams = container.streams.audio
        if not streams:
            raise AudioError(f"{path}: no audio stream")
        if stream_index >= len(streams):
            raise AudioError(f"{path}: has {len(streams)} audio streams, asked for #{stream_index}")
        stream = streams[stream_index]
        sr = stream.codec_context.sample_rate or stream.rate
        chunks = []
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            fmt = frame.format.name
            if frame.format.is_planar:
                arr = arr.reshape(len(frame.layout.channels), -1)
            else:
                arr = arr.reshape(-1, len(frame.layout.channels)).T
            if fmt.startswith("s16"):
                arr = arr.astype(np.float32) / 32768.0
            elif fmt.startswith("s32"):
                arr = arr.astype(np.float32) / 2147483648.0
            else:
                arr = arr.astype(np.float32)
            chunks.append(arr)
    if not chunks:
        raise AudioError(f"{path}: no decodable audio")
    data = np.concatenate(chunks, axis=1)
    start = int(round(start_s * sr))
    end = None if duration_s is None else start + int(round(duration_s * sr))
    return Audio(np.ascontiguousarray(data[:, start:end]), int(sr))


def load_audio(path: str | Path, *, start_s: float = 0.0, duration_s: float | None = None,
               stream_index: int = 0) -> Audio:
    """Read a file (or an excerpt of it) as float32 ``[C, T]``. Raises AudioError naming the file."""
    path = str(path)
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{path}: file not found")
    if p.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    audio = None
    errors = []
    if not path.lower().endswith((".mp4", ".m4a", ".aac")) and stream_index == 0:
        try:
            audio = _read_soundfile(path, start_s, duration_s)
        except Exception as exc:  # noqa: BLE001 - fall back to PyAV
            errors.append(f"soundfile: {exc}")
    if audio is None:
        try:
            audio = _read_pyav(path, start_s, duration_s, stream_index)
        except AudioError as exc:
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"pyav: {exc}")
    if audio is None:
        raise AudioError(f"{path}: unreadable or corrupt audio ({'; '.join(errors)})")
    if audio.samples.shape[-1] == 0:
        raise AudioError(f"{path}: contains no samples")
    return audio


def resample(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample ``[..., T]`` with soxr (the harness's one resampler)."""
    if from_hz == to_hz:
        return x
    import soxr

    x = np.asarray(x, dtype=np.float32)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    out = soxr.resample(flat.T, from_hz, to_hz, quality=SOXR_QUALITY).T
    return np.ascontiguousarray(out.reshape(*lead, -1), dtype=np.float32)


def to_channels(x: np.ndarray, channels: int | None = None, policy: str = "mono") -> np.ndarray:
    """Apply the channel policy to ``[C, T]``; with ``channels`` set, return exactly that many."""
    if policy not in CHANNEL_POLICIES:
        raise ValueError(f"unknown channel policy {policy!r}; choose from {CHANNEL_POLICIES}")
    if policy == "mono":
        x = x.mean(axis=0, keepdims=True)
    elif policy == "first":
        x = x[:1]
    if channels is None or x.shape[0] == channels:
        return np.ascontiguousarray(x, dtype=np.float32)
    if channels == 1:
        return np.ascontiguousarray(x.mean(axis=0, keepdims=True), dtype=np.float32)
    if x.shape[0] == 1:
        return np.ascontiguousarray(np.repeat(x, channels, axis=0), dtype=np.float32)
    if x.shape[0] > channels:
        # fold extra channels onto the first `channels` ones, round-robin, then average
        out = np.zeros((channels, x.shape[1]), dtype=np.float32)
        counts = np.zeros((channels, 1), dtype=np.float32)
        for c in range(x.shape[0]):
            out[c % channels] += x[c]
            counts[c % channels] += 1
        return out / counts
    return np.ascontiguousarray(np.concatenate([x, np.repeat(x[-1:], channels - x.shape[0], 0)]), dtype=np.float32)


def align_lengths(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim both ``[..., T]`` arrays to the shorter length."""
    n = min(a.shape[-1], b.shape[-1])
    return a[..., :n], b[..., :n]


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``[..., T]`` to exactly ``n`` samples."""
    if x.shape[-1] >= n:
        return x[..., :n]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])]
    return np.pad(x, pad)


def loudness_lufs(x: np.ndarray, sample_rate_hz: int) -> float:
    """Integrated loudness (ITU-R BS.1770) of ``[C, T]``; -inf for silence or too-short clips."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate_hz)
    if x.shape[-1] < int(0.4 * sample_rate_hz):  # BS.1770 needs one 400 ms block
        return float("-inf")
    return float(meter.integrated_loudness(x.T.astype(np.float64)))


def normalize_loudness(x: np.ndarray, sample_rate_hz: int, target_lufs: float = -16.0,
                       peak_limit: float = 0.999) -> tuple[np.ndarray, float]:
    """Scale to ``target_lufs``; returns (audio, gain_db). Silent/short clips are returned unchanged."""
    lufs = loudness_lufs(x, sample_rate_hz)
    if not np.isfinite(lufs):
        return x, 0.0
    gain = 10 ** ((target_lufs - lufs) / 20)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak * gain > peak_limit and peak > 0:
        gain = peak_limit / peak
    return (x * gain).astype(np.float32), float(20 * np.log10(gain))


def check_samples(x: np.ndarray, name: str) -> list[str]:
    """Problems worth recording about a signal: non-finite samples, clipping, silence."""
    notes = []
    if not np.all(np.isfinite(x)):
        notes.append(f"{name}: contains NaN/Inf samples")
        return notes
    if x.size and np.max(np.abs(x)) >= 0.9999:
        notes.append(f"{name}: clipped (peak at full scale)")
    if x.size and np.max(np.abs(x)) == 0:
        notes.append(f"{name}: all-zero (silent)")
    return notes


def array_hash(x: np.ndarray, sample_rate_hz: int) -> str:
    """Content hash of samples + rate (for the reconstruction cache)."""
    h = hashlib.sha256()
    h.update(str(sample_rate_hz).encode())
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return h.hexdigest()


def write_wav(path: str | Path, x: np.ndarray, sample_rate_hz: int, subtype: str = "FLOAT") -> None:
    """Write ``[C, T]`` float audio."""
    import soundfile as sf

    sf.write(str(path), np.asarray(x, dtype=np.float32).T, sample_rate_hz, subtype=subtype)


def to_wav_bytes(x: np.ndarray, sample_rate_hz: int, subtype: str = "PCM_16") -> bytes:
    """An in-memory WAV file of ``[C, T]`` audio clipped to [-1, 1] (16-bit PCM by default)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(x, dtype=np.float32).T, -1, 1), sample_rate_hz, format="WAV", subtype=subtype)
    return buf.getvalue()
