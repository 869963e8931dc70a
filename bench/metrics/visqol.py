"""ViSQOL v3 (Hines et al. 2015; Chinen et al. 2020, google/visqol conformance version 333) as ``visqol``.

Backend: ``visqol-python`` 3.8 (a pure-Python port of the C++ ViSQOL v3.3.3), optionally accelerated by
numba (the ``[accel]`` extra: JIT-compiled gammatone filterbank, NSIM and patch search, bit-exact with the
NumPy path) and with the deep-lattice TFLite mapper for speech (the ``[lattice]`` extra, ai-edge-litert).
Output: MOS-LQO (unit "MOS", 1-5; higher is better).

Mode per item (pinned):

* **audio mode** for ``music`` and ``general`` items: input at **48 kHz**, 32 gammatone bands up to 24 kHz,
  NSIM mapped to MOS-LQO by the bundled libsvm nu-SVR model (``libsvm_nu_svr_model.txt``), search window
  radius 60, global alignment and fine realignment on (the C++ defaults and conformance settings).
* **speech mode** for ``speech`` items: input at **16 kHz**, VAD-selected patches, 32 bands up to 8 kHz,
  mapped by the deep-lattice model
  ``lattice_tcditugenmeetpackhref_ls2_nl60_lr12_bs2048_learn.005_ep2400_train1_7_raw.tflite``
  (the C++ default mapper), search window 60, alignment on.

Sample rates: the metric is registered at 48 kHz, so the runner hands it 48 kHz audio. Speech items are
resampled 48 -> 16 kHz here with :func:`bench.audio.resample` (soxr HQ, the harness's one resampler), as
ViSQOL's maintainers recommend for speech mode (google/visqol issue #39). Speech that started at 16 kHz thus
makes a 16 -> 48 -> 16 kHz round trip, which soxr HQ passes unchanged below 8 kHz up to about -100 dB.
The option ``speech_sample_rate_hz=None`` scores speech at the incoming rate instead (this is what
upstream's 48 kHz speech conformance vectors do).

The mode comes from ``items[i].domain``; the option ``mode="audio"|"speech"`` overrides it (and is the only
source when ``items`` is None; default then "audio"). ``use_lattice_model=False`` selects the older
exponential speech mapper.

Conformance (tests/test_metrics_visqol.py, ``../shared/metrics-ref/EXPECTED.md`` section 3): audio mode
matches the C++ values within 1e-4 on every conformance pair except contrabassoon/24 kbps AAC, where the
port is 1.17e-4 off (2.3467514 vs 2.3468682; a known port difference in the per-band NSIM); speech mode
(lattice) is within 1e-2 of the C++ values on the upstream 48 kHz vectors.

Unscorable items give NaN with a reason: a silent reference (ViSQOL would return a meaningless high
score), a silent reconstruction (the level matching divides by zero), non-finite samples, a clip shorter
than audio mode's minimum of 1.0 s, or speech too short / without enough voice activity for a patch.

Speed: audio mode about 0.24 s of compute per s of audio with numba, about 1.7 without; speech mode about
0.09 / 1.0 (EXPECTED.md section 7; ``scripts/bench_metrics.py``). :func:`numba_active` says whether numba is
used; set ``BENCH_VISQOL_NUMBA=0`` to force the NumPy path (same results, slower).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric

AUDIO_RATE_HZ = 48000
SPEECH_RATE_HZ = 16000
SEARCH_WINDOW = 60
MIN_AUDIO_MODE_S = 1.0  # below this the 48 kHz spectrogram has fewer frames than one 30-frame patch search
SILENCE_PEAK = 1e-6
ENV_NUMBA = "BENCH_VISQOL_NUMBA"

_APIS: dict[tuple[str, bool, int], Any] = {}
_LOCK = threading.Lock()


def numba_available() -> bool:
    """Whether numba is importable by visqol-python (the ``[accel]`` extra is installed)."""
    from visqol import numba_accel

    return bool(getattr(numba_accel, "_NUMBA_IMPORTED", numba_accel._HAS_NUMBA))


def numba_active() -> bool:
    """Whether visqol-python will take its numba kernels on the next call."""
    from visqol import numba_accel

    _apply_numba_env()
    return bool(numba_accel.has_numba())


def set_numba(enabled: bool) -> bool:
    """Switch visqol-python between its numba kernels and its NumPy fallback (bit-exact either way).

    visqol-python picks the path at each call through ``numba_accel.has_numba()``, which reads the module
    flag ``_HAS_NUMBA``; flipping the flag toggles it in-process. Returns the new state (False when numba
    is not installed, whatever was asked).
    """
    from visqol import numba_accel

    # _NUMBA_IMPORTED is our own attribute on visqol's module (not declared there): what the import found
    if not hasattr(numba_accel, "_NUMBA_IMPORTED"):
        setattr(numba_accel, "_NUMBA_IMPORTED", numba_accel._HAS_NUMBA)
    numba_accel._HAS_NUMBA = bool(enabled) and getattr(numba_accel, "_NUMBA_IMPORTED")
    return numba_accel._HAS_NUMBA


def _apply_numba_env() -> None:
    value = os.environ.get(ENV_NUMBA)
    if value is not None:
        set_numba(value.strip().lower() not in ("0", "false", "no", "off"))


def _get_api(mode: str, use_lattice_model: bool, search_window: int = SEARCH_WINDOW) -> Any:
    """A cached, configured ``VisqolApi`` per (mode, mapper, window): models load once per process."""
    key = (mode, bool(use_lattice_model) if mode == "speech" else False, int(search_window))
    with _LOCK:
        if key not in _APIS:
            try:
                from visqol import VisqolApi
            except ImportError as exc:
                raise MetricError("visqol needs visqol-python: pip install 'visqol-python[accel,lattice]'") from exc
            _apply_numba_env()
            api = VisqolApi()
            if mode == "speech":
                try:
                    api.create(mode="speech", use_lattice_model=key[1], search_window=search_window)
                except ImportError as exc:
                    raise MetricError("visqol speech mode with the lattice model needs "
                                      "pip install 'visqol-python[lattice]' (or use_lattice_model=False)") from exc
            else:
                api.create(mode="audio", search_window=search_window)
            _APIS[key] = api
        return _APIS[key]


class _CollectWarnings(logging.Handler):
    """Collects visqol-python's warnings (duration mismatch, dropped patches) into the row's extras."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def visqol_pair(reference: np.ndarray, degraded: np.ndarray, sample_rate_hz: int, *, mode: str,
                speech_sample_rate_hz: int | None = SPEECH_RATE_HZ, use_lattice_model: bool = True,
                search_window: int = SEARCH_WINDOW, name: str = "item") -> MetricValue:
    """Score one mono pair (1-D arrays at ``sample_rate_hz``) in ``mode`` ("audio" or "speech").

    Audio mode requires 48 kHz input (the SVR model was trained on 48 kHz gammatone features). Speech mode
    resamples to ``speech_sample_rate_hz`` (16 kHz) unless it is None.
    """
    if mode not in ("audio", "speech"):
        raise MetricError(f"visqol mode must be 'audio' or 'speech', got {mode!r}")
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    deg = np.asarray(degraded, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(deg))):
        return failed(f"{name}: {'reference' if not np.all(np.isfinite(ref)) else 'reconstruction'} "
                      "contains NaN/Inf samples")
    if ref.size == 0 or np.max(np.abs(ref)) < SILENCE_PEAK:
        return failed(f"{name}: reference is silent; ViSQOL's score would be meaningless")
    if deg.size == 0 or np.max(np.abs(deg)) < SILENCE_PEAK:
        return failed(f"{name}: reconstruction is silent; ViSQOL cannot match its level to the reference")
    rate = int(sample_rate_hz)
    if mode == "audio":
        if rate != AUDIO_RATE_HZ:
            raise MetricError(f"visqol audio mode needs {AUDIO_RATE_HZ} Hz input, got {rate} Hz")
        duration_s = min(ref.size, deg.size) / rate
        if duration_s < MIN_AUDIO_MODE_S:
            return failed(f"{name}: clip of {duration_s:.3f} s is shorter than ViSQOL audio mode's "
                          f"{MIN_AUDIO_MODE_S} s minimum")
    elif speech_sample_rate_hz is not None and rate != speech_sample_rate_hz:
        from bench.audio import resample

        ref = resample(ref.astype(np.float32), rate, speech_sample_rate_hz).astype(np.float64)
        deg = resample(deg.astype(np.float32), rate, speech_sample_rate_hz).astype(np.float64)
        rate = int(speech_sample_rate_hz)
    api = _get_api(mode, use_lattice_model, search_window)
    logger = logging.getLogger("visqol")
    collector = _CollectWarnings()
    logger.addHandler(collector)
    try:
        result = api.measure_from_arrays(ref, deg, rate)
    except (ValueError, IndexError) as exc:
        # the port raises these when the spectrogram is shorter than a patch or VAD finds no patch
        what = "too short or without enough voice activity" if mode == "speech" else "too short"
        return failed(f"{name}: ViSQOL {mode} mode cannot score the clip ({what}: {exc})")
    finally:
        logger.removeHandler(collector)
    extra: dict[str, Any] = {
        "mode": mode, "sample_rate_hz": rate, "vnsim": float(result.vnsim),
        "mapper": ("lattice" if use_lattice_model else "exponential") if mode == "speech" else "svr",
        "numba": numba_active()}
    if collector.messages:
        extra["warnings"] = sorted(set(collector.messages))
    return MetricValue(float(result.moslqo), extra=extra)


def _modes(batch: int, items: Sequence[Any] | None, mode: str | None) -> list[str]:
    if mode is not None:
        if mode not in ("audio", "speech"):
            raise MetricError(f"visqol mode must be 'audio' or 'speech', got {mode!r}")
        return [mode] * batch
    if items is None:
        return ["audio"] * batch
    if len(items) != batch:
        raise MetricError(f"got {len(items)} items for a batch of {batch}")
    return ["speech" if getattr(it, "domain", None) == "speech" else "audio" for it in items]


def visqol(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = AUDIO_RATE_HZ,
           items: Sequence[Any] | None = None, mode: str | None = None,
           speech_sample_rate_hz: int | None = SPEECH_RATE_HZ, use_lattice_model: bool = True,
           search_window: int = SEARCH_WINDOW, **_: Any) -> list[MetricValue]:
    """ViSQOL MOS-LQO per item: ``preds`` is the degraded signal, ``target`` the reference, ``[B, T]``.

    Mode per item from ``items[i].domain`` (speech -> speech mode, else audio mode) or the ``mode`` option.
    """
    if preds.dim() != 2 or target.dim() != 2 or preds.shape[0] != target.shape[0]:
        raise MetricError(f"visqol expects preds and target [B, T] with the same B, got "
                          f"{tuple(preds.shape)} and {tuple(target.shape)}")
    if sample_rate_hz is None:
        raise MetricError("visqol needs the sample rate of its input")
    modes = _modes(preds.shape[0], items, mode)
    p = preds.detach().to(torch.float64).cpu().numpy()
    t = target.detach().to(torch.float64).cpu().numpy()
    out: list[MetricValue] = []
    for i, m in enumerate(modes):
        name = getattr(items[i], "id", f"#{i}") if items is not None else f"#{i}"
        out.append(visqol_pair(t[i], p[i], int(sample_rate_hz), mode=m,
                               speech_sample_rate_hz=speech_sample_rate_hz,
                               use_lattice_model=use_lattice_model, search_window=search_window, name=name))
    return out


register_metric(MetricSpec(
    name="visqol", fn=visqol, higher_is_better=True, unit="MOS", sample_rate_hz=AUDIO_RATE_HZ,
    needs_reference=True, valid_range=(1.0, 5.0), domains=("speech", "music", "general"),
    version="3.3.3-py3.8", min_duration_s=MIN_AUDIO_MODE_S, requires=("visqol-python",),
    source="google/visqol v3 (conformance 333) via visqol-python 3.8; audio mode 48 kHz SVR, "
           "speech mode 16 kHz lattice",
    description="ViSQOL MOS-LQO; mode by item domain (speech: 16 kHz lattice; music/general: 48 kHz SVR)"))
