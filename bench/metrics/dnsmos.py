"""DNSMOS P.835 (Reddy et al., ICASSP 2022): non-intrusive speech quality as ``dnsmos_sig``, ``dnsmos_bak``,
``dnsmos_ovrl``.

Definition (pinned; Microsoft's ``DNSMOS/dnsmos_local.py`` from the DNS Challenge repository, as packaged by
``speechmos`` 0.0.1):

* Input: the reconstruction only (no reference), mono, **16 kHz**, float in [-1, 1] (not clipped here).
* A clip shorter than 9.01 s is repeated (concatenated with itself) until it is at least 9.01 s long.
  Windows of 144 160 samples (9.01 s) start every 1 s, ``floor(len / 16000 - 9.01) + 1`` of them.
* Each window goes through the ONNX model ``dnsmos_models/sig_bak_ovr.onnx`` shipped inside the
  ``speechmos`` wheel (raw waveform in, raw SIG/BAK/OVRL out), then the published third-order
  calibration polynomials: SIG = -0.08397278 s^2 + 1.22083953 s + 0.0052439,
  BAK = -0.13166888 b^2 + 1.60915514 b - 0.39604546, OVRL = -0.06766283 o^2 + 1.11546468 o + 0.04602535.
* The clip's score is the mean over windows. Unit "MOS" (about 1-5), higher is better.

Why our own loop around speechmos's models: ``speechmos.dnsmos`` imports librosa (for the P.808 model,
which we do not report) and requests at module import, neither a dependency here. The model files and the
arithmetic are the same; tests/test_metrics_dnsmos.py checks equality against speechmos's own ``DNSMOS``
class. Option ``personalized=True`` uses the personalised model ``pdnsmos_models/sig_bak_ovr.onnx`` and its
polynomials (the "DNSMOS personalized" variant that penalises interfering talkers).

One ONNX pass gives all three numbers; they are cached per clip, so the three registered metrics cost one
inference. Speech only. Unscorable items give NaN with a reason: shorter than 1 s (tiling a shorter clip
nine-fold would score a loop, not the speech), digital silence (peak < 1e-6), non-finite samples.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric

DNSMOS_SAMPLE_RATE_HZ = 16000
INPUT_LENGTH_S = 9.01
WINDOW_SAMPLES = int(INPUT_LENGTH_S * DNSMOS_SAMPLE_RATE_HZ)  # 144160
MIN_DURATION_S = 1.0
SILENCE_PEAK = 1e-6
ONNX_BATCH = 8  # windows per ONNX call
SCORES = ("sig", "bak", "ovrl")

# np.poly1d coefficients, highest power first (dnsmos_local.py / speechmos get_polyfit_val)
POLY: dict[bool, dict[str, tuple[float, ...]]] = {
    False: {"sig": (-0.08397278, 1.22083953, 0.0052439),
            "bak": (-0.13166888, 1.60915514, -0.39604546),
            "ovrl": (-0.06766283, 1.11546468, 0.04602535)},
    True: {"sig": (-0.01019296, 0.02751166, 1.19576786, -0.24348726),
           "bak": (-0.04976499, 0.44276479, -0.1644611, 0.96883132),
           "ovrl": (-0.00533021, 0.005101, 1.18058466, -0.11236046)},
}

_SESSIONS: dict[bool, Any] = {}
_LOCK = threading.Lock()
_CACHE: "OrderedDict[tuple[bool, str], dict[str, float]]" = OrderedDict()
_CACHE_SIZE = 512


def model_path(personalized: bool = False) -> Path:
    """Path of the SIG/BAK/OVRL ONNX model inside the installed ``speechmos`` package (not imported)."""
    spec = find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise MetricError("dnsmos needs the speechmos package (it ships the ONNX models): "
                          "pip install speechmos onnxruntime")
    folder = "pdnsmos_models" if personalized else "dnsmos_models"
    path = Path(list(spec.submodule_search_locations)[0]) / folder / "sig_bak_ovr.onnx"
    if not path.is_file():
        raise MetricError(f"DNSMOS model missing from the speechmos install: {path}")
    return path


def _session(personalized: bool) -> Any:
    with _LOCK:
        if personalized not in _SESSIONS:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise MetricError("dnsmos needs onnxruntime: pip install onnxruntime") from exc
            opts = ort.SessionOptions()
            threads = int(os.environ.get("BENCH_ORT_THREADS", torch.get_num_threads()))
            opts.intra_op_num_threads = max(1, threads)
            opts.inter_op_num_threads = 1
            _SESSIONS[personalized] = ort.InferenceSession(str(model_path(personalized)), opts,
                                                           providers=["CPUExecutionProvider"])
        return _SESSIONS[personalized]


def windows(audio: np.ndarray) -> np.ndarray:
    """The 9.01 s analysis windows of a 16 kHz clip, ``[N, 144160]`` float32 (DNSMOS's tiling and hop)."""
    audio = np.asarray(audio, dtype=np.float32)
    while len(audio) < WINDOW_SAMPLES:
        audio = np.concatenate([audio, audio])
    num_hops = int(np.floor(len(audio) / DNSMOS_SAMPLE_RATE_HZ) - INPUT_LENGTH_S) + 1
    segs = [audio[i * DNSMOS_SAMPLE_RATE_HZ: i * DNSMOS_SAMPLE_RATE_HZ + WINDOW_SAMPLES] for i in range(num_hops)]
    return np.stack([s for s in segs if len(s) == WINDOW_SAMPLES])


def dnsmos_scores(audio: np.ndarray, personalized: bool = False) -> dict[str, float]:
    """SIG, BAK, OVRL (calibrated MOS) of one 16 kHz clip; cached by content."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    key = (personalized, hashlib.sha1(audio.tobytes()).hexdigest())
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return dict(_CACHE[key])
    sess = _session(personalized)
    segs = windows(audio)
    raw = np.concatenate([sess.run(None, {"input_1": segs[i:i + ONNX_BATCH]})[0]
                          for i in range(0, len(segs), ONNX_BATCH)]).astype(np.float64)
    scores = {name: float(np.mean(np.polyval(POLY[personalized][name], raw[:, k])))
              for k, name in enumerate(SCORES)}
    scores["num_windows"] = len(segs)
    _CACHE[key] = scores
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return dict(scores)


def _dnsmos(which: str, preds: torch.Tensor, sample_rate_hz: int | None, items: Sequence[Any] | None,
            personalized: bool) -> list[MetricValue]:
    if preds.dim() != 2:
        raise MetricError(f"expected preds [B, T], got shape {tuple(preds.shape)}")
    if sample_rate_hz not in (None, DNSMOS_SAMPLE_RATE_HZ):
        raise MetricError(f"DNSMOS runs at {DNSMOS_SAMPLE_RATE_HZ} Hz, got {sample_rate_hz} Hz")
    wavs = preds.detach().to(torch.float32).cpu().numpy()
    out: list[MetricValue] = []
    for i, wav in enumerate(wavs):
        name = getattr(items[i], "id", f"#{i}") if items is not None else f"#{i}"
        if len(wav) < MIN_DURATION_S * DNSMOS_SAMPLE_RATE_HZ:
            out.append(failed(f"{name}: clip of {len(wav) / DNSMOS_SAMPLE_RATE_HZ:.3f} s is shorter than "
                              f"DNSMOS's {MIN_DURATION_S} s minimum here"))
        elif not np.all(np.isfinite(wav)):
            out.append(failed(f"{name}: reconstruction contains NaN/Inf samples"))
        elif float(np.max(np.abs(wav))) < SILENCE_PEAK:
            out.append(failed(f"{name}: reconstruction is silent (peak < {SILENCE_PEAK:g})"))
        else:
            s = dnsmos_scores(wav, personalized)
            extra = {k: s[k] for k in SCORES if k != which}
            extra.update(num_windows=s["num_windows"], personalized=bool(personalized))
            out.append(MetricValue(s[which], extra=extra))
    return out


def dnsmos_sig(preds: torch.Tensor, target: torch.Tensor | None = None, *,
               sample_rate_hz: int | None = DNSMOS_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
               personalized: bool = False, **_: Any) -> list[MetricValue]:
    """DNSMOS P.835 SIG (speech signal quality) of ``preds``; ``target`` is unused."""
    return _dnsmos("sig", preds, sample_rate_hz, items, personalized)


def dnsmos_bak(preds: torch.Tensor, target: torch.Tensor | None = None, *,
               sample_rate_hz: int | None = DNSMOS_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
               personalized: bool = False, **_: Any) -> list[MetricValue]:
    """DNSMOS P.835 BAK (background noise intrusiveness; higher = less noise) of ``preds``."""
    return _dnsmos("bak", preds, sample_rate_hz, items, personalized)


def dnsmos_ovrl(preds: torch.Tensor, target: torch.Tensor | None = None, *,
                sample_rate_hz: int | None = DNSMOS_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
                personalized: bool = False, **_: Any) -> list[MetricValue]:
    """DNSMOS P.835 OVRL (overall quality) of ``preds``."""
    return _dnsmos("ovrl", preds, sample_rate_hz, items, personalized)


_COMMON: dict[str, Any] = dict(
    higher_is_better=True, unit="MOS", sample_rate_hz=DNSMOS_SAMPLE_RATE_HZ, needs_reference=False,
    valid_range=(1.0, 5.0), domains=("speech",), min_duration_s=MIN_DURATION_S,
    requires=("speechmos", "onnxruntime"), version="p835-1",
    source="DNSMOS P.835 (Reddy et al. 2022), dnsmos_local.py; ONNX model from speechmos 0.0.1")
for _name, _fn, _what in (("dnsmos_sig", dnsmos_sig, "speech signal quality (SIG)"),
                          ("dnsmos_bak", dnsmos_bak, "background noise quality (BAK)"),
                          ("dnsmos_ovrl", dnsmos_ovrl, "overall quality (OVRL)")):
    register_metric(MetricSpec(name=_name, fn=_fn, description=f"non-intrusive DNSMOS P.835 {_what}", **_COMMON))
