"""Speech recognisers for the ``wer``/``cer`` metrics, behind one small interface.

* ``pocketsphinx`` (default): CMU PocketSphinx 5 with the US-English acoustic model, language model and
  dictionary that ship inside the pip wheel, so WER works offline with no download. It is a weak
  recogniser (about 20-35 % WER on clean LibriVox read speech), which makes it sensitive to codec
  damage but means its absolute numbers are not comparable with Whisper-based WER in papers.
  Decoding uses batch cepstral mean normalisation over the whole utterance (``full_utt=True``), so the
  transcript of a clip does not depend on the clips decoded before it nor on its level. The search is
  capped at ``maxhmmpf=3000`` active HMMs per frame (PocketSphinx's default is 30000): on the LibriVox
  fixtures the clean WER is identical (0.268 corpus), on 28 VCTK/LibriSpeech utterances 0.687 vs 0.693, for
  25-35 % less CPU on clean speech and about 2.8x less on noisy speech, where the uncapped search explodes.
* ``whisper:<local dir>``: a Whisper checkpoint in Hugging Face format read from a local directory
  (``config.json``, ``model.safetensors``, tokenizer and feature-extractor files) with ``transformers``.
  Nothing is downloaded (``local_files_only``) and only safetensors weights are accepted
  (``use_safetensors``), never pickles. Long clips are transcribed in 30 s windows.

Choose a backend with the metric option ``asr="whisper:/models/whisper-small.en"``, or for a whole run with
the environment variable ``BENCH_ASR_BACKEND`` (same syntax). Backends are cached per process: a decoder is
built once per worker and reused for every item.

Add a recogniser by subclassing :class:`AsrBackend` and calling :func:`register_asr_backend`.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

ASR_SAMPLE_RATE_HZ = 16000
ENV_BACKEND = "BENCH_ASR_BACKEND"
DEFAULT_BACKEND = "pocketsphinx"


class AsrError(RuntimeError):
    """A recogniser that cannot be built or run; the message says how to fix it."""


class AsrBackend(ABC):
    """Transcribes mono float32 audio at :attr:`sample_rate_hz` to text."""

    name: str = ""
    sample_rate_hz: int = ASR_SAMPLE_RATE_HZ

    @abstractmethod
    def transcribe(self, wav: np.ndarray) -> str:
        """Return the transcript of ``wav`` (1-D float32 in [-1, 1] at ``sample_rate_hz``)."""

    def describe(self) -> str:
        """Backend id with versions, recorded next to each WER value for provenance."""
        return self.name


class PocketSphinxBackend(AsrBackend):
    """PocketSphinx 5 with its bundled en-us model (or user model files, by path)."""

    name = "pocketsphinx"

    def __init__(self, hmm: str | None = None, lm: str | None = None, dict_path: str | None = None,
                 max_hmm_per_frame: int = 3000) -> None:
        self.hmm, self.lm, self.dict_path = hmm, lm, dict_path
        self.max_hmm_per_frame = int(max_hmm_per_frame)
        self._decoder: Any = None  # pocketsphinx.Decoder, built on first use
        self._lock = threading.Lock()

    def _get_decoder(self) -> Any:
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError as exc:
                raise AsrError("pocketsphinx is not installed: pip install pocketsphinx") from exc
            kwargs: dict[str, object] = {"samprate": self.sample_rate_hz, "loglevel": "FATAL",
                                         "maxhmmpf": self.max_hmm_per_frame}
            for key, value in (("hmm", self.hmm), ("lm", self.lm), ("dict", self.dict_path)):
                if value is not None:
                    if not Path(value).exists():
                        raise AsrError(f"pocketsphinx {key} model not found: {value}")
                    kwargs[key] = value
            self._decoder = Decoder(**kwargs)
        return self._decoder

    def transcribe(self, wav: np.ndarray) -> str:
        """Decode ``wav`` as one utterance (clipped to [-1, 1], 16-bit PCM); "" when nothing is recognised."""
        pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        with self._lock:  # one decoder, one utterance at a time
            decoder = self._get_decoder()
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def describe(self) -> str:
        """PocketSphinx version, model and search cap: all of them change the transcripts."""
        from importlib.metadata import version

        model = "en-us (bundled)" if self.hmm is None else str(self.hmm)
        return f"pocketsphinx {version('pocketsphinx')} {model} maxhmmpf={self.max_hmm_per_frame}"


class WhisperBackend(AsrBackend):
    """Whisper from a local Hugging Face-format directory via ``transformers`` (imported lazily)."""

    name = "whisper"
    window_s = 30.0

    def __init__(self, model_path: str, language: str = "en", device: str = "cpu", num_beams: int = 1) -> None:
        if not model_path:
            raise AsrError("whisper backend needs a local model directory: asr='whisper:/path/to/model'")
        self.model_path = str(model_path)
        self.language, self.device, self.num_beams = language, device, num_beams
        self._model: Any = None  # WhisperForConditionalGeneration, loaded on first use
        self._processor: Any = None  # WhisperProcessor, loaded with the model
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        path = Path(self.model_path)
        if not path.is_dir():
            raise AsrError(f"whisper model directory not found: {self.model_path} "
                           "(expected a Hugging Face-format folder with config.json and model.safetensors)")
        if not any(path.glob("*.safetensors")):
            raise AsrError(f"{self.model_path}: no *.safetensors weights; only safetensors are loaded "
                           "(convert the checkpoint, never load pickled weights)")
        try:
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
        except ImportError as exc:
            raise AsrError("the whisper ASR backend needs transformers: pip install transformers") from exc
        self._processor = WhisperProcessor.from_pretrained(self.model_path, local_files_only=True)
        model: Any = WhisperForConditionalGeneration.from_pretrained(
            self.model_path, local_files_only=True, use_safetensors=True)
        self._model = model.to(self.device).eval()  # (transformers' stubs type .to() on the class wrongly)

    def transcribe(self, wav: np.ndarray) -> str:
        """Whisper transcript of ``wav`` (``num_beams`` beams), decoded in 30 s windows joined by spaces."""
        import torch

        with self._lock:
            self._load()
            wav = np.asarray(wav, dtype=np.float32)
            step = int(self.window_s * self.sample_rate_hz)
            texts = []
            for start in range(0, max(len(wav), 1), step):
                chunk = wav[start:start + step]
                feats = self._processor(chunk, sampling_rate=self.sample_rate_hz, return_tensors="pt")
                with torch.inference_mode():
                    ids = self._model.generate(feats.input_features.to(self.device), language=self.language,
                                               task="transcribe", num_beams=self.num_beams)
                texts.append(self._processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        return " ".join(t for t in texts if t)

    def describe(self) -> str:
        """Whisper checkpoint folder name and transformers version, recorded with each value."""
        from importlib.metadata import version

        return f"whisper {Path(self.model_path).name} (transformers {version('transformers')})"


_FACTORIES: dict[str, Callable[[str], AsrBackend]] = {
    "pocketsphinx": lambda arg: PocketSphinxBackend(hmm=arg or None),
    "whisper": lambda arg: WhisperBackend(arg),
}
_CACHE: dict[str, AsrBackend] = {}
_CACHE_LOCK = threading.Lock()


def register_asr_backend(name: str, factory: Callable[[str], AsrBackend]) -> None:
    """Make ``name[:argument]`` usable as ``asr=`` option; ``factory(argument)`` builds the backend."""
    _FACTORIES[name] = factory


def asr_backend_names() -> list[str]:
    """Names usable before the colon of an ``asr=`` spec, sorted (for help texts and typo hints)."""
    return sorted(_FACTORIES)


def get_asr_backend(spec: str | AsrBackend | None = None) -> AsrBackend:
    """Backend for ``"name"`` or ``"name:argument"``; None = ``$BENCH_ASR_BACKEND`` or pocketsphinx.

    The instance is cached per process, so a pocketsphinx decoder or a Whisper model is loaded once.
    """
    if isinstance(spec, AsrBackend):
        return spec
    spec = (spec or os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND).strip()
    name, _, arg = spec.partition(":")
    if name not in _FACTORIES:
        from bench.registry import did_you_mean

        raise AsrError(f"unknown ASR backend {name!r}.{did_you_mean(name, asr_backend_names())}")
    with _CACHE_LOCK:
        if spec not in _CACHE:
            _CACHE[spec] = _FACTORIES[name](arg)
        return _CACHE[spec]
