"""WER/CER from strong recognisers: Whisper (``wer_whisper``, ``cer_whisper``), HuBERT (``wer_hubert``, ``cer_hubert``).

Definition (pinned): the reconstruction (``preds`` [B, T], 16 kHz mono) is transcribed by the recogniser,
the item's transcript is the reference text, both pass through Whisper's English text normaliser
(:func:`bench.metrics.text_norm.normalize_whisper`: Radford et al. 2022, appendix C; contractions expanded,
numbers and currencies standardised to digits, British spellings made American, punctuation removed), and

    WER = (S + D + I) / N_words,   CER = (S + D + I) / N_chars (single spaces counted)

from a Levenshtein alignment (``jiwer.process_words`` / ``process_characters``). Unit: **fraction**
(0 = perfect; above 1 with many insertions); lower is better. The reference audio is not used.

Recognisers (:mod:`bench.metrics.asr` says how each decodes):

* ``wer_whisper``/``cer_whisper``: Whisper (``WhisperForConditionalGeneration``), weights from
  ``$BENCH_WHISPER_MODEL`` (a folder written by ``save_pretrained`` or a hub id in the local cache),
  default ``openai/whisper-large-v3``; ``openai/whisper-small`` is the common smaller choice
  (``bench weights fetch openai/whisper-small``, then ``BENCH_WHISPER_MODEL=openai/whisper-small``).
  Greedy decoding, English, 30 s windows, at most 224 tokens a window. Source: Radford et al. 2022.
* ``wer_hubert``/``cer_hubert``: HuBERT-Large fine-tuned with CTC on LibriSpeech 960 h (``HubertForCTC`` +
  ``Wav2Vec2Processor``), weights from ``$BENCH_HUBERT_MODEL``, default ``facebook/hubert-large-ls960-ft``;
  greedy CTC decoding, 60 s windows. Source: Hsu et al. 2021, "HuBERT: Self-Supervised Speech
  Representation Learning by Masked Prediction of Hidden Units".

Each metric's model info (:func:`bench.metrics._models.model_info`: source, weights SHA-256) adds the
recogniser's decoding settings and the normaliser's name and versions; it enters the metric's fingerprint
and the run manifest, so values of other weights, decoding or normaliser never resume as these.

The whole batch goes to the recogniser in one call (all rows' windows together, at most 16 windows a
forward / generate call); a row's transcript does not depend on its batch. The option ``device`` (default:
the device ``preds`` arrive on, the CPU in the scoring pool) chooses where the model runs; models load once
per process and device. Unscorable items are NaN with a reason: weights not on disk (the reason names
``bench weights fetch HUB_ID`` and the environment variable), no transcript or one empty after
normalisation, a clip shorter than 0.1 s, non-finite samples, digital silence (peak below 1e-6).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric
from bench.metrics.wer import COMMON_SPEC, WER_SAMPLE_RATE_HZ, check_batch, reference_texts, score_transcripts

WHISPER_ENV = "BENCH_WHISPER_MODEL"
WHISPER_DEFAULT = "openai/whisper-large-v3"
HUBERT_ENV = "BENCH_HUBERT_MODEL"
HUBERT_DEFAULT = "facebook/hubert-large-ls960-ft"
WHISPER_LANGUAGE = "en"
WHISPER_NUM_BEAMS = 1


@dataclass(frozen=True)
class Recogniser:
    """A strong recogniser: where its weights are named, how its backend is built, its decoding settings."""

    kind: str  # "whisper" or "hubert"
    label: str  # shown in display names: "Whisper", "HuBERT"
    env_var: str
    default_hub_id: str
    build: Callable[[str, str], Any]  # (folder, device) -> AsrBackend
    settings: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """The model info of this recogniser's metrics: weights (source, SHA-256), decoding, normaliser."""
        from bench.metrics._models import model_info
        from bench.metrics.text_norm import whisper_normaliser_info

        try:
            normaliser = whisper_normaliser_info()
        except ImportError as exc:
            normaliser = {"normaliser_error": str(exc)}
        return model_info(self.env_var, self.default_hub_id, recogniser=self.kind, **self.settings, **normaliser)


def _whisper_backend(folder: str, device: str) -> Any:
    from bench.metrics.asr import WhisperBackend

    return WhisperBackend(folder, language=WHISPER_LANGUAGE, device=device, num_beams=WHISPER_NUM_BEAMS)


def _hubert_backend(folder: str, device: str) -> Any:
    from bench.metrics.asr import HubertBackend

    return HubertBackend(folder, device=device)


def _whisper_settings() -> dict[str, Any]:
    from bench.metrics.asr import WhisperBackend

    return WhisperBackend("-", language=WHISPER_LANGUAGE, num_beams=WHISPER_NUM_BEAMS).settings()


def _hubert_settings() -> dict[str, Any]:
    from bench.metrics.asr import HubertBackend

    return HubertBackend("-").settings()


WHISPER = Recogniser("whisper", "Whisper", WHISPER_ENV, WHISPER_DEFAULT, _whisper_backend, _whisper_settings())
HUBERT = Recogniser("hubert", "HuBERT", HUBERT_ENV, HUBERT_DEFAULT, _hubert_backend, _hubert_settings())

_BACKENDS: dict[tuple[str, str, str], Any] = {}
_BACKENDS_LOCK = threading.Lock()


def _backend(rec: Recogniser, folder: Path, device: str) -> Any:
    """One backend per (recogniser, folder, device) and process, so the hypothesis cache keys stay stable."""
    key = (rec.kind, str(folder.resolve()), device)
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = rec.build(str(folder), device)
        return _BACKENDS[key]


def _resolve_device(device: str | None, preds: torch.Tensor) -> str:
    """``device`` as a torch device string; None = where ``preds`` are. MetricError for CUDA without a GPU."""
    dev = torch.device(device) if device is not None else preds.device
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MetricError(f"device {device!r} asked for, but torch sees no CUDA device")
    return str(dev)


def error_rate(rec: Recogniser, preds: torch.Tensor, *, unit: str, sample_rate_hz: int | None,
               items: Sequence[Any] | None, transcripts: Sequence[str | None] | None,
               device: str | None) -> list[MetricValue]:
    """Per-item WER (``unit="word"``) or CER of ``rec``'s transcripts of ``preds``, Whisper-normalised."""
    from bench.metrics._models import MissingWeights, resolve_model
    from bench.metrics.asr import AsrError
    from bench.metrics.text_norm import WHISPER_NORMALISER, normalize_whisper, whisper_normaliser

    wavs = check_batch(preds, sample_rate_hz)
    refs = reference_texts(wavs.shape[0], items, transcripts)
    try:
        folder = resolve_model(rec.env_var, rec.default_hub_id)
    except MissingWeights as exc:
        return [failed(f"{rec.kind} weights missing: {exc}") for _ in range(wavs.shape[0])]
    try:
        whisper_normaliser()
    except ImportError as exc:
        raise MetricError(str(exc)) from exc
    backend = _backend(rec, folder, _resolve_device(device, preds))
    try:
        return score_transcripts(wavs, refs, items, unit=unit, backend=backend, normalise=normalize_whisper,
                                 extra={"asr": backend.describe(), "normaliser": WHISPER_NORMALISER})
    except AsrError as exc:
        raise MetricError(str(exc)) from exc


def wer_whisper(preds: torch.Tensor, target: torch.Tensor | None = None, *,
                sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
                transcripts: Sequence[str | None] | None = None, device: str | None = None,
                **_: Any) -> list[MetricValue]:
    """Word error rate (fraction) of Whisper(``preds``) vs each item's transcript; ``target`` is unused."""
    return error_rate(WHISPER, preds, unit="word", sample_rate_hz=sample_rate_hz, items=items,
                      transcripts=transcripts, device=device)


def cer_whisper(preds: torch.Tensor, target: torch.Tensor | None = None, *,
                sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
                transcripts: Sequence[str | None] | None = None, device: str | None = None,
                **_: Any) -> list[MetricValue]:
    """Character error rate (fraction, spaces counted) of Whisper(``preds``) vs each item's transcript."""
    return error_rate(WHISPER, preds, unit="char", sample_rate_hz=sample_rate_hz, items=items,
                      transcripts=transcripts, device=device)


def wer_hubert(preds: torch.Tensor, target: torch.Tensor | None = None, *,
               sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
               transcripts: Sequence[str | None] | None = None, device: str | None = None,
               **_: Any) -> list[MetricValue]:
    """Word error rate (fraction) of HuBERT-CTC(``preds``) vs each item's transcript; ``target`` is unused."""
    return error_rate(HUBERT, preds, unit="word", sample_rate_hz=sample_rate_hz, items=items,
                      transcripts=transcripts, device=device)


def cer_hubert(preds: torch.Tensor, target: torch.Tensor | None = None, *,
               sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ, items: Sequence[Any] | None = None,
               transcripts: Sequence[str | None] | None = None, device: str | None = None,
               **_: Any) -> list[MetricValue]:
    """Character error rate (fraction, spaces counted) of HuBERT-CTC(``preds``) vs each item's transcript."""
    return error_rate(HUBERT, preds, unit="char", sample_rate_hz=sample_rate_hz, items=items,
                      transcripts=transcripts, device=device)


def _display_name(prefix: str, rec: Recogniser) -> str:
    """``"WER (Whisper, whisper-large-v3)"``: the recogniser and the weights named at import."""
    from bench.metrics._models import model_source

    return f"{prefix} ({rec.label}, {Path(model_source(rec.env_var, rec.default_hub_id)).name})"


def _register(name: str, fn: Callable[..., list[MetricValue]], rec: Recogniser, what: str, source: str) -> None:
    unit_name = "word" if name.startswith("wer") else "character"
    register_metric(MetricSpec(
        name=name, fn=fn, **COMMON_SPEC, requires=("transformers", "jiwer", "whisper-normalizer"), version="1",
        model_info=rec.info, display_name=_display_name(name[:3].upper(), rec), default=False, on_device=True,
        source=f"{source}; Whisper EnglishTextNormalizer (Radford et al. 2022, app. C); jiwer {unit_name} Levenshtein",
        description=f"{unit_name} error rate of a {what} transcript of the reconstruction vs the item transcript"))


_register("wer_whisper", wer_whisper, WHISPER, "Whisper", "Whisper (Radford et al. 2022) via transformers")
_register("cer_whisper", cer_whisper, WHISPER, "Whisper", "Whisper (Radford et al. 2022) via transformers")
_register("wer_hubert", wer_hubert, HUBERT, "HuBERT-Large CTC", "HuBERT-Large CTC (Hsu et al. 2021) via transformers")
_register("cer_hubert", cer_hubert, HUBERT, "HuBERT-Large CTC", "HuBERT-Large CTC (Hsu et al. 2021) via transformers")
