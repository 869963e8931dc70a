"""Pitch accuracy of a reconstruction against its reference: ``f0_rmse`` (cents) and ``vuv_error``.

Both come from one pitch-tracking pass over each signal (reference and reconstruction tracked alike):

* F0 track: pYIN (Mauch & Dixon, "pYIN: a fundamental frequency estimator using probabilistic threshold
  distributions", ICASSP 2014) as ``librosa.pyin`` (librosa >= 0.11) implements it: a per-frame F0 (pitch
  bins of 0.1 semitone = 10 cents from ``fmin``) and a voiced/unvoiced decision (the Viterbi path through
  pYIN's voiced and unvoiced states; no extra threshold).
* ``f0_rmse`` = sqrt(mean over frames voiced in BOTH tracks of c²), c = 1200 · log2(f0_preds / f0_target)
  (cents). Lower is better, 0 for identical tracks; symmetric in preds/target. Frames voiced in only one
  track do not count here: that is what ``vuv_error`` measures.
* ``vuv_error`` = fraction of frames whose voiced/unvoiced decision differs between the two tracks, in
  [0, 1]; lower is better; symmetric.

Settings (pinned, passed explicitly so that a change of librosa's defaults cannot move the values):

* rate 16 kHz (both domains; music's fmax of 2093 Hz leaves its first harmonics below the 8 kHz Nyquist);
  frame 1024 samples (64 ms: at least two periods of the lowest F0 of both ranges), hop 160 samples (10 ms),
  ``center=True`` with zero padding, so a clip of T samples has 1 + T // 160 frames. Reference and
  reconstruction arrive aligned and of equal length, so frame k of one is frame k of the other.
* F0 range per domain (``items[i].domain``, or the ``domain`` option, else speech): speech 50-600 Hz;
  music 32.70-2093.0 Hz (C1-C7).
* pYIN: 100 thresholds with a Beta(2, 18) prior, Boltzmann parameter 2, resolution 0.1 semitone, at most
  35.92 semitones/s of pitch change, voicing switch probability 0.01, no-trough probability 0.01.

Why pYIN/librosa: of the offline trackers that install here, it is the one that is both well kept and
robust. It is a published, deterministic algorithm with a voicing model (an HMM, not an energy gate),
ships as an ISC-licensed pure-Python wheel (numba-compiled), and needs no weights. pyworld (WORLD's dio and
harvest) only comes as a source archive whose 0.3.5 ``__init__`` imports ``pkg_resources``, which current
setuptools no longer ship (and harvest took about 0.6 s per second of audio here); torchcrepe needs a
torchaudio built for our torch, which the index does not have, and its full model takes about 7 s per
second of audio on one CPU core; praat-parselmouth is fast but GPL-3. The cost is pYIN's 10-cent pitch grid:
the F0 of each frame is a bin centre, so differences below about 5 cents are not resolved, and the Viterbi
pass grows with the square of the number of bins (about 0.2 s per second of speech and 0.6 s per second of
music on one core).

pYIN tracks one (the predominant) pitch: the numbers are meant for speech and monophonic or
predominant-melody music; on dense polyphony they compare whatever periodicity pYIN locks onto. The track
of each clip is cached by content (and settings), so both metrics, and every reconstruction of the same
reference, track each signal once. Unscorable items are NaN with a reason: non-finite samples, a clip
shorter than one 64 ms frame, a silent reference (peak below 1e-6: no pitch to compare with); ``f0_rmse``
also when no frame is voiced in both tracks (a silent or noise-like reconstruction of voiced audio, or a
reference without voiced frames), where ``vuv_error`` is still defined.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics._spectral import check_pair, screen
from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric

PITCH_SAMPLE_RATE_HZ = 16000
HOP_SAMPLES = 160  # 10 ms at 16 kHz
FRAME_SAMPLES = 1024  # 64 ms at 16 kHz
MIN_DURATION_S = FRAME_SAMPLES / PITCH_SAMPLE_RATE_HZ
SILENCE_PEAK = 1e-6
DEFAULT_DOMAIN = "speech"
CENTS_PER_OCTAVE = 1200.0

#: pYIN's parameters, every one passed explicitly (they are librosa 0.11's defaults, pinned here)
PYIN_OPTIONS: dict[str, Any] = dict(
    n_thresholds=100, beta_parameters=(2, 18), boltzmann_parameter=2, resolution=0.1,
    max_transition_rate=35.92, switch_prob=0.01, no_trough_prob=0.01, center=True, pad_mode="constant")


@dataclass(frozen=True)
class PitchRange:
    """The F0 search range of a domain, in Hz."""

    fmin_hz: float
    fmax_hz: float


PITCH_RANGES: dict[str, PitchRange] = {
    "speech": PitchRange(50.0, 600.0),
    "music": PitchRange(32.70, 2093.0),  # C1-C7
}


@dataclass(frozen=True)
class PitchTrack:
    """One clip's pYIN track: F0 per frame in Hz (NaN where unvoiced) and the voiced flags."""

    f0_hz: np.ndarray
    voiced: np.ndarray


_LOCK = threading.Lock()
_CACHE: "OrderedDict[tuple[str, str], PitchTrack]" = OrderedDict()
_CACHE_SIZE = 512


def num_frames(num_samples: int) -> int:
    """Frames of a clip of ``num_samples`` samples: 1 + T // hop (centred frames)."""
    return 1 + num_samples // HOP_SAMPLES


def track_pitch(audio: np.ndarray, domain: str = DEFAULT_DOMAIN) -> PitchTrack:
    """pYIN track of one 16 kHz mono clip with the domain's pinned settings; cached by content."""
    if domain not in PITCH_RANGES:
        raise MetricError(f"no pitch settings for domain {domain!r} (known: {', '.join(PITCH_RANGES)})")
    audio = np.ascontiguousarray(audio, dtype=np.float64)
    key = (domain, hashlib.sha1(audio.tobytes()).hexdigest())
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    track = _pyin(audio, PITCH_RANGES[domain])
    with _LOCK:
        _CACHE[key] = track
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return track


def _pyin(audio: np.ndarray, pitch_range: PitchRange) -> PitchTrack:
    try:
        import librosa
    except ImportError as exc:
        raise MetricError("f0_rmse/vuv_error need librosa (pYIN): pip install 'bench[pitch]'") from exc
    f0, voiced, _ = librosa.pyin(audio, fmin=pitch_range.fmin_hz, fmax=pitch_range.fmax_hz,
                                 sr=PITCH_SAMPLE_RATE_HZ, frame_length=FRAME_SAMPLES, hop_length=HOP_SAMPLES,
                                 fill_na=np.nan, **PYIN_OPTIONS)
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = np.asarray(voiced, dtype=bool)
    f0.setflags(write=False)
    voiced.setflags(write=False)
    return PitchTrack(f0, voiced)


def compare_tracks(ref: PitchTrack, deg: PitchTrack) -> dict[str, Any]:
    """Both scores of a pair of equal-length tracks, with frame counts (``f0_rmse_cents`` NaN: none voiced in both)."""
    if ref.voiced.shape != deg.voiced.shape:
        raise MetricError(f"pitch tracks differ in length ({ref.voiced.size} and {deg.voiced.size} frames)")
    both = ref.voiced & deg.voiced
    # a difference of logs (not the log of a ratio): exactly antisymmetric, so the RMSE is exactly symmetric
    cents = CENTS_PER_OCTAVE * (np.log2(deg.f0_hz[both]) - np.log2(ref.f0_hz[both]))
    return {
        "f0_rmse_cents": float(np.sqrt(np.mean(cents ** 2))) if cents.size else math.nan,
        "f0_mean_cents": float(np.mean(cents)) if cents.size else math.nan,
        "vuv_error": float(np.mean(ref.voiced != deg.voiced)),
        "n_frames": int(ref.voiced.size),
        "n_voiced_ref": int(ref.voiced.sum()),
        "n_voiced_pred": int(deg.voiced.sum()),
        "n_voiced_both": int(both.sum()),
        "n_vuv_disagree": int((ref.voiced != deg.voiced).sum()),
    }


def _domains(batch: int, items: Sequence[Any] | None, domain: str | None) -> list[str]:
    if domain is not None:
        return [domain] * batch
    if items is None:
        return [DEFAULT_DOMAIN] * batch
    if len(items) != batch:
        raise MetricError(f"got {len(items)} items for a batch of {batch}")
    return [getattr(it, "domain", None) or DEFAULT_DOMAIN for it in items]


def _score_one(ref: np.ndarray, deg: np.ndarray, domain: str, which: str) -> MetricValue:
    if domain not in PITCH_RANGES:
        return failed(f"{which}: no pitch settings for domain {domain!r} (speech and music only)")
    if float(np.max(np.abs(ref))) < SILENCE_PEAK:
        return failed(f"{which}: reference is silent (peak < {SILENCE_PEAK:g}): no pitch to compare with")
    scores = compare_tracks(track_pitch(ref, domain), track_pitch(deg, domain))
    extra = {k: v for k, v in scores.items() if k != which}
    extra["domain"] = domain
    if which == "f0_rmse_cents" and scores["n_voiced_both"] == 0:
        return failed(f"f0_rmse: no frame voiced in both tracks (reference voiced in {scores['n_voiced_ref']}, "
                      f"reconstruction in {scores['n_voiced_pred']} of {scores['n_frames']} frames)", **extra)
    return MetricValue(scores[which], extra=extra)


def _pitch_metric(preds: torch.Tensor, target: torch.Tensor, sample_rate_hz: int | None,
                  items: Sequence[Any] | None, domain: str | None, which: str) -> list[MetricValue]:
    name = "f0_rmse" if which == "f0_rmse_cents" else which
    if sample_rate_hz not in (None, PITCH_SAMPLE_RATE_HZ):
        raise MetricError(f"{name} runs at {PITCH_SAMPLE_RATE_HZ} Hz, got {sample_rate_hz} Hz")
    p, t = check_pair(preds, target, torch.float64)
    reasons = screen(p, t, min_samples=FRAME_SAMPLES, metric=name)
    domains = _domains(p.shape[0], items, domain)
    p_np, t_np = p.detach().cpu().numpy(), t.detach().cpu().numpy()
    return [failed(r) if r else _score_one(t_np[i], p_np[i], domains[i], which) for i, r in enumerate(reasons)]


def f0_rmse(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = PITCH_SAMPLE_RATE_HZ,
            items: Sequence[Any] | None = None, domain: str | None = None, **_: Any) -> list[MetricValue]:
    """RMSE in cents of pYIN F0 over frames voiced in both reference and reconstruction, per item."""
    return _pitch_metric(preds, target, sample_rate_hz, items, domain, "f0_rmse_cents")


def vuv_error(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = PITCH_SAMPLE_RATE_HZ,
              items: Sequence[Any] | None = None, domain: str | None = None, **_: Any) -> list[MetricValue]:
    """Fraction of frames whose pYIN voiced/unvoiced decision differs between reference and reconstruction."""
    return _pitch_metric(preds, target, sample_rate_hz, items, domain, "vuv_error")


_SETTINGS = (f"pYIN (Mauch & Dixon 2014) via librosa.pyin, 16 kHz, frame {FRAME_SAMPLES}, hop {HOP_SAMPLES} "
             "(10 ms), 0.1-semitone bins; F0 range speech 50-600 Hz, music 32.70-2093 Hz")
_COMMON: dict[str, Any] = dict(
    higher_is_better=False, sample_rate_hz=PITCH_SAMPLE_RATE_HZ, domains=("speech", "music"),
    min_duration_s=MIN_DURATION_S, requires=("librosa",), version="1", default=False)
register_metric(MetricSpec(
    name="f0_rmse", fn=f0_rmse, unit="cents", valid_range=(0.0, math.inf), display_name="F0 RMSE",
    source=_SETTINGS + "; RMSE of 1200 log2(f_pred/f_ref) over frames voiced in both",
    description="pitch error: RMSE of log-F0 in cents over frames voiced in reference and reconstruction",
    **_COMMON))
register_metric(MetricSpec(
    name="vuv_error", fn=vuv_error, unit="fraction", valid_range=(0.0, 1.0), display_name="V/UV error",
    source=_SETTINGS + "; fraction of frames whose voiced/unvoiced decisions differ",
    description="voicing error: fraction of frames voiced in one of reference/reconstruction only",
    **_COMMON))
