"""``demo``: a tiny embedded set generated offline, so ``bench run`` works with no data at all.

This is a SMOKE SET, NOT A BENCHMARK. Synthetic speech and synthesized music/sound are far easier
(and far stranger) than real recordings; numbers measured on it say that the pipeline runs, not how
good a codec is. Use LibriTTS, DAPS, MUSDB18 or AudioSet (or ``folder`` on your own audio) for that.

Six mono 16-bit WAV items, 5 to 8 seconds each, generated deterministically in a few seconds:

* speech (24 kHz): two sentences of the Harvard/rainbow kind spoken by the eSpeak NG formant
  synthesizer (library and voice data from the ``espeakng-loader`` wheel, driven through ctypes)
  with two different voices; the sentence is the transcript;
* music (44.1 kHz): a melody of harmonic tones with ADSR envelopes and vibrato over a plucked
  Karplus-Strong bass line; a drum pattern of kick, snare and hi-hat;
* general (44.1 kHz): rain (filtered noise plus resonant droplets); a series of bird chirps
  (FM sweeps with trills).

The files are written once under ``<cache>/demo-v1`` (``bench.config.cache_dir``, e.g.
``~/.cache/bench/demo-v1`` or ``$BENCH_CACHE_DIR/demo-v1``), atomically, and regenerated when
missing. Every run on a machine produces the same bytes (seeded generators, each eSpeak utterance
spoken by a fresh process with a fixed random seed, fixed WAV subtype); the bytes are recorded in ``manifest.json``.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bench.datasets.base import Dataset, Item, register_dataset

DEMO_VERSION = "v1"
SPEECH_RATE_HZ = 24000
MUSIC_RATE_HZ = 44100
PEAK = 0.7  # every item is scaled to this peak: loud enough, never clipped

# --------------------------------------------------------------------------------------------
# eSpeak NG through ctypes
# --------------------------------------------------------------------------------------------

_ESPEAK_LOCK = threading.Lock()
_ESPEAK: dict[str, Any] = {}
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1


def _espeak() -> tuple[ctypes.CDLL, int, list[np.ndarray]]:
    """Load and initialise libespeak-ng once per process; returns (lib, sample_rate_hz, chunks)."""
    if "lib" in _ESPEAK:
        return _ESPEAK["lib"], _ESPEAK["rate"], _ESPEAK["chunks"]
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        from bench.deps import MissingBackendError, install_hint

        raise MissingBackendError(f"the demo set's speech needs espeakng-loader: {install_hint(['espeakng-loader'])}") from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    data_dir = Path(espeakng_loader.get_data_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    # the path argument is the directory that *contains* espeak-ng-data
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_dir.parent).encode(), 0)
    if rate <= 0:
        raise RuntimeError(f"eSpeak NG failed to initialise with data at {data_dir} (code {rate})")
    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def on_audio(wav: ctypes._Pointer[ctypes.c_short], num_samples: int, _events: int | None) -> int:
        if num_samples > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    callback = callback_type(on_audio)
    lib.espeak_SetSynthCallback(callback)
    _ESPEAK.update(lib=lib, rate=rate, chunks=chunks, callback=callback)  # keep the callback alive
    return lib, rate, chunks


def _espeak_synthesize_here(text: str, voice: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, int]:
    """Synthesize in this process (int16 samples). Output depends on what this process spoke before."""
    with _ESPEAK_LOCK:
        lib, rate, chunks = _espeak()
        chunks.clear()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
        lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
        # eSpeak's noise sources (breathy variants, fricatives) are pseudo-random: reseed them
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(ctypes.c_long(1))
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != 0 or not chunks:
            raise RuntimeError(f"eSpeak NG failed to speak {text[:40]!r} with {voice!r} (code {err})")
        pcm = np.concatenate(chunks).astype(np.int16)
        chunks.clear()
    return pcm, int(rate)


def _espeak_child() -> None:
    """Entry point of the helper process: argv = [text, voice, rate_wpm, pitch]; raw PCM to stdout."""
    text, voice, rate_wpm, pitch = sys.argv[1:5]
    pcm, rate = _espeak_synthesize_here(text, voice, int(rate_wpm), int(pitch))
    sys.stdout.buffer.write(int(rate).to_bytes(4, "little") + pcm.tobytes())


def espeak_synthesize(text: str, voice: str, rate_wpm: int = 165, pitch: int = 50) -> tuple[np.ndarray, int]:
    """Speak ``text`` with an eSpeak NG voice (e.g. ``"en-us+m3"``); returns (float32 [T], rate_hz).

    eSpeak keeps synthesis state (filters, intonation) in process globals that survive
    ``espeak_Terminate``, so the same call gives different samples depending on what was spoken
    before. Each utterance is therefore made in a fresh Python process, which makes the output a
    pure function of the arguments (about 0.3 s per call).
    """
    cmd = [sys.executable, "-c", "from bench.datasets.demo import _espeak_child; _espeak_child()",
           text, voice, str(rate_wpm), str(pitch)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                      os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    if proc.returncode != 0 or len(proc.stdout) < 6:
        raise RuntimeError(f"eSpeak NG failed to speak {text[:40]!r} with {voice!r}: "
                           f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    rate = int.from_bytes(proc.stdout[:4], "little")
    pcm = np.frombuffer(proc.stdout[4:], dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0, rate


# --------------------------------------------------------------------------------------------
# Synthesis helpers
# --------------------------------------------------------------------------------------------


def _adsr(n: int, sr: int, attack_s: float, decay_s: float, sustain: float, release_s: float) -> np.ndarray:
    """Piecewise-linear ADSR envelope of exactly ``n`` samples (release at the end)."""
    a, d, r = (max(1, int(x * sr)) for x in (attack_s, decay_s, release_s))
    s = max(0, n - a - d - r)
    env = np.concatenate([
        np.linspace(0, 1, a, endpoint=False),
        np.linspace(1, sustain, d, endpoint=False),
        np.full(s, sustain),
        np.linspace(sustain, 0, r),
    ])
    return env[:n] if len(env) >= n else np.pad(env, (0, n - len(env)))


def _midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _harmonic_tone(freq_hz: float, dur_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A bowed/reed-like tone: 12 harmonics with a 1/k^1.3 spectrum, slight vibrato, ADSR."""
    n = int(dur_s * sr)
    t = np.arange(n) / sr
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi)) * np.clip(t / 0.3, 0, 1)
    phase = 2 * np.pi * np.cumsum(freq_hz * vibrato) / sr
    x = np.zeros(n)
    for k in range(1, 13):
        if k * freq_hz > sr / 2 * 0.9:
            break
        x += np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k ** 1.3 * (1.0 if k % 2 else 0.6)
    return x * _adsr(n, sr, 0.04, 0.12, 0.7, min(0.15, dur_s / 3))


def _karplus_strong(freq_hz: float, dur_s: float, sr: int, rng: np.random.Generator, decay: float = 0.996) -> np.ndarray:
    """A plucked string: a noise burst through a delay line with an averaging loss filter.

    y[n] = decay * (y[n-N] + y[n-N-1]) / 2 is computed one period (N samples) at a time, since each
    block only depends on samples at least N back.
    """
    n = int(dur_s * sr)
    period = max(2, int(round(sr / freq_hz)))
    y = np.zeros(n + period + 1)
    burst = rng.uniform(-1, 1, period + 1)
    for _ in range(3):  # soften the pluck: a felt pick, not a razor
        burst = 0.5 * (burst + np.roll(burst, 1))
    y[: period + 1] = burst / (np.max(np.abs(burst)) + 1e-12)
    i = period + 1
    while i < len(y):
        j = min(i + period, len(y))
        y[i:j] = decay * 0.5 * (y[i - period:j - period] + y[i - period - 1:j - period - 1])
        i = j
    out = y[period + 1:]
    return out * _adsr(n, sr, 0.002, 0.05, 0.8, 0.05)


def _place(buffer: np.ndarray, sound: np.ndarray, start: int) -> None:
    end = min(len(buffer), start + len(sound))
    if end > start:
        buffer[start:end] += sound[: end - start]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x - np.mean(x)
    return (x / (np.max(np.abs(x)) + 1e-12) * PEAK).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The six items
# --------------------------------------------------------------------------------------------

SPEECH_TEXTS = {
    "speech-en-us-male": (
        "en-us+m3",
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
        "It is easy to tell the depth of a well.",
    ),
    "speech-en-gb-female": (
        "en+f3",
        "A rainbow is a division of white light into many beautiful colours. These take the shape "
        "of a long round arch, with its path high above.",
    ),
}


def _speech(item_id: str) -> tuple[np.ndarray, int]:
    voice, text = SPEECH_TEXTS[item_id]
    from bench.audio import resample

    pcm, rate = espeak_synthesize(text, voice)
    x = resample(pcm[None, :], rate, SPEECH_RATE_HZ)[0]
    pad = np.zeros(int(0.25 * SPEECH_RATE_HZ), dtype=np.float32)  # a breath of silence at each end
    return _normalise(np.concatenate([pad, x, pad])), SPEECH_RATE_HZ


def _music_melody() -> tuple[np.ndarray, int]:
    """Eight bars of a minor-key melody over a plucked bass, 6.4 s at 150 bpm."""
    sr, rng = MUSIC_RATE_HZ, np.random.default_rng(1001)
    beat_s = 60 / 150
    melody = [(69, 1), (72, 1), (76, 1), (74, 0.5), (72, 0.5), (71, 1), (67, 1), (69, 2),
              (72, 1), (74, 1), (76, 1.5), (77, 0.5), (76, 1), (74, 1), (72, 2)]
    bass = [45, 45, 43, 43, 41, 41, 40, 40, 45, 45, 43, 43, 41, 41, 40, 45]  # one note per beat
    total = int(16 * beat_s * sr) + int(0.4 * sr)
    x = np.zeros(total)
    t = 0.0
    for note, beats in melody:
        _place(x, 0.5 * _harmonic_tone(_midi_hz(note), beats * beat_s * 0.95, sr, rng), int(t * sr))
        t += beats * beat_s
    for i, note in enumerate(bass):
        _place(x, 0.6 * _karplus_strong(_midi_hz(note), beat_s * 1.2, sr, rng), int(i * beat_s * sr))
    return _normalise(x), sr


def _music_drums() -> tuple[np.ndarray, int]:
    """Three bars of a rock pattern (kick, snare, closed hi-hat) at 120 bpm, 6 s."""
    from scipy.signal import butter, sosfilt

    sr, rng = MUSIC_RATE_HZ, np.random.default_rng(1002)
    step = int(60 / 120 / 4 * sr)  # sixteenth notes

    t = np.arange(int(0.35 * sr)) / sr
    kick_f = 45 + 110 * np.exp(-t / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(kick_f) / sr) * np.exp(-t / 0.12)
    kick[: int(0.002 * sr)] += rng.uniform(-0.4, 0.4, int(0.002 * sr))  # beater click

    t = np.arange(int(0.25 * sr)) / sr
    snare_noise = sosfilt(butter(2, [1500, 7000], "bandpass", fs=sr, output="sos"), rng.standard_normal(len(t)))
    snare = 0.9 * snare_noise * np.exp(-t / 0.06) + 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)

    t = np.arange(int(0.06 * sr)) / sr
    hat = sosfilt(butter(4, 7500, "highpass", fs=sr, output="sos"), rng.standard_normal(len(t))) * np.exp(-t / 0.015)

    pattern = {  # 16 steps per bar
        "kick": [0, 7, 8, 10],
        "snare": [4, 12],
        "hat": list(range(0, 16, 2)),
    }
    bars = 3
    x = np.zeros(bars * 16 * step + int(0.3 * sr))
    for bar in range(bars):
        for name, sound, gain in (("kick", kick, 1.0), ("snare", snare, 0.7), ("hat", hat, 0.35)):
            for s in pattern[name]:
                accent = 1.0 if s % 4 == 0 else 0.8
                _place(x, gain * accent * sound, (bar * 16 + s) * step)
    return _normalise(x), sr


def _general_rain() -> tuple[np.ndarray, int]:
    """7 s of rain: a low-passed noise bed with slow gusts, plus ~30 resonant droplets per second."""
    from scipy.signal import butter, sosfilt

    sr, rng = MUSIC_RATE_HZ, np.random.default_rng(1003)
    n = int(7.0 * sr)
    t = np.arange(n) / sr
    bed = sosfilt(butter(2, [300, 6000], "bandpass", fs=sr, output="sos"), rng.standard_normal(n))
    gust = 0.7 + 0.3 * np.sin(2 * np.pi * 0.23 * t) * np.sin(2 * np.pi * 0.11 * t + 1.0)
    x = 0.25 * bed * gust
    num_drops = int(30 * 7.0)
    for start, f0, amp in zip(rng.integers(0, n, num_drops), rng.uniform(1200, 4200, num_drops),
                              rng.uniform(0.2, 1.0, num_drops)):
        dur = int(0.03 * sr)
        td = np.arange(dur) / sr
        # a bubble rings and rises in pitch as it shrinks (Minnaert resonance)
        drop = np.sin(2 * np.pi * np.cumsum(f0 * (1 + 2.5 * td / 0.03)) / sr) * np.exp(-td / 0.006)
        _place(x, amp * drop, int(start))
    return _normalise(x), sr


def _general_birds() -> tuple[np.ndarray, int]:
    """6 s of bird song: phrases of FM-swept chirps and a trill over faint wind noise."""
    from scipy.signal import butter, sosfilt

    sr, rng = MUSIC_RATE_HZ, np.random.default_rng(1004)
    n = int(6.0 * sr)
    x = 0.01 * sosfilt(butter(2, 800, "lowpass", fs=sr, output="sos"), rng.standard_normal(n))

    def chirp(dur_s: float, f_start: float, f_end: float, fm_hz: float, fm_depth: float) -> np.ndarray:
        m = int(dur_s * sr)
        tc = np.arange(m) / sr
        f = f_start * (f_end / f_start) ** (tc / dur_s)  # exponential sweep
        f = f * (1 + fm_depth * np.sin(2 * np.pi * fm_hz * tc))
        env = np.sin(np.pi * tc / dur_s) ** 2
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * env

    t = 0.3
    while t < 5.6:
        kind = rng.integers(0, 3)
        if kind == 0:  # a phrase of 3-5 rising chirps
            for _ in range(int(rng.integers(3, 6))):
                dur = rng.uniform(0.06, 0.12)
                _place(x, chirp(dur, rng.uniform(2500, 3500), rng.uniform(5000, 7000), 40, 0.03), int(t * sr))
                t += dur + rng.uniform(0.03, 0.08)
        elif kind == 1:  # a descending whistle
            dur = rng.uniform(0.25, 0.4)
            _place(x, 0.8 * chirp(dur, rng.uniform(4500, 5500), rng.uniform(2200, 2800), 12, 0.02), int(t * sr))
            t += dur
        else:  # a fast trill of tiny chirps
            for _ in range(int(rng.integers(8, 14))):
                _place(x, 0.6 * chirp(0.025, 4200, 3600, 0, 0), int(t * sr))
                t += 0.04
        t += rng.uniform(0.2, 0.5)
    return _normalise(x), sr


@dataclass(frozen=True)
class _Spec:
    id: str
    domain: str
    make: Callable[[], tuple[np.ndarray, int]]
    transcript: str | None = None
    speaker: str | None = None


DEMO_ITEMS: tuple[_Spec, ...] = (
    _Spec("speech-en-us-male", "speech", lambda: _speech("speech-en-us-male"),
          SPEECH_TEXTS["speech-en-us-male"][1], "espeak-en-us+m3"),
    _Spec("speech-en-gb-female", "speech", lambda: _speech("speech-en-gb-female"),
          SPEECH_TEXTS["speech-en-gb-female"][1], "espeak-en+f3"),
    _Spec("music-melody", "music", _music_melody),
    _Spec("music-drums", "music", _music_drums),
    _Spec("general-rain", "general", _general_rain),
    _Spec("general-birds", "general", _general_birds),
)


# --------------------------------------------------------------------------------------------
# Cache on disk
# --------------------------------------------------------------------------------------------


def demo_dir(root: str | os.PathLike | None = None) -> Path:
    """Directory holding the generated files: ``<root or cache dir>/demo-v1``."""
    from bench.config import cache_dir

    return Path(root).expanduser() / f"demo-{DEMO_VERSION}" if root else cache_dir() / f"demo-{DEMO_VERSION}"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def render_item(spec: _Spec) -> bytes:
    """Generate one item as 16-bit mono WAV bytes."""
    from bench.audio import to_wav_bytes

    x, sr = spec.make()
    return to_wav_bytes(x[None, :], sr, subtype="PCM_16")


def ensure_demo(root: str | os.PathLike | None = None) -> Path:
    """Generate whatever demo files are missing (atomically) and return their directory."""
    import hashlib

    out = demo_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    missing = [s for s in DEMO_ITEMS if not (out / f"{s.id}.wav").is_file()]
    if not missing and manifest_path.is_file():
        return out
    for spec in missing:
        _write_atomic(out / f"{spec.id}.wav", render_item(spec))
    manifest = {
        "name": "demo",
        "version": DEMO_VERSION,
        "note": "smoke set, not a benchmark",
        "files": {s.id + ".wav": hashlib.sha256((out / f"{s.id}.wav").read_bytes()).hexdigest() for s in DEMO_ITEMS},
    }
    _write_atomic(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return out


class DemoDataset(Dataset):
    """Six generated clips (two speech, two music, two general) for smoke runs with no data on disk."""

    name = "demo"
    splits = ("test",)
    default_split = "test"
    domains = ("speech", "music", "general")
    description = "six generated items (eSpeak NG speech, synthesized music and sounds): a smoke set, not a benchmark"
    licence = "generated by bench (MIT); eSpeak NG voices GPL-3.0"

    def items(self, split: str | None = None, root: str | Path | None = None) -> Iterator[Item]:
        """Yield the six items; ``root``, if given, replaces the cache directory they live in."""
        split = self.check_split(split)
        out = ensure_demo(root)
        for spec in DEMO_ITEMS:
            yield Item(id=spec.id, path=str(out / f"{spec.id}.wav"), domain=spec.domain, dataset=self.name,
                       split=split, transcript=spec.transcript, speaker=spec.speaker,
                       extra={"synthetic": True})


DEMO = register_dataset(DemoDataset())
