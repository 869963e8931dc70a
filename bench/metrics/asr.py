"""Speech recognisers for the WER/CER metrics, behind one small interface.

* ``pocketsphinx`` (the ``wer``/``cer`` metrics, the offline fallback): CMU PocketSphinx 5 with the
  US-English acoustic model, language model and dictionary that ship inside the pip wheel, so WER works
  offline with no download. It is a weak recogniser (about 20-35 % WER on clean LibriVox read speech),
  which makes it sensitive to codec damage but means its absolute numbers are not comparable with
  Whisper-based WER in papers. Decoding uses batch cepstral mean normalisation over the whole utterance
  (``full_utt=True``), so the transcript of a clip does not depend on the clips decoded before it nor on
  its level. The search is capped at ``maxhmmpf=3000`` active HMMs per frame (PocketSphinx's default is
  30000): on the LibriVox fixtures the clean WER is identical (0.268 corpus), on 28 VCTK/LibriSpeech
  utterances 0.687 vs 0.693, for 25-35 % less CPU on clean speech and about 2.8x less on noisy speech,
  where the uncapped search explodes.
* ``whisper:<local dir>`` (the ``wer_whisper``/``cer_whisper`` metrics): a Whisper checkpoint in Hugging
  Face format (``config.json``, ``model.safetensors``, tokenizer and feature-extractor files) run with
  ``transformers``' ``WhisperForConditionalGeneration``. Clips are cut into 30 s windows (Whisper's input
  length; the feature extractor zero-pads every window to 30 s, so windows of any length share one
  ``generate`` call, at most ``max_batch`` windows a call); greedy decoding (``num_beams=1``) in English,
  no timestamps, at most ``max_new_tokens`` = 224 tokens a window (openai-whisper's default ``sample_len``,
  half the text context; a window that loops stops there). The windows' texts are joined by spaces.
* ``hubert:<local dir>`` (``wer_hubert``/``cer_hubert``): a CTC model (``HubertForCTC`` with its
  ``Wav2Vec2Processor``), greedy CTC decoding (arg-max per frame, repeats merged, blanks dropped). Clips
  are cut into 60 s windows; windows of equal length share one forward pass, so no window is ever padded
  and a transcript cannot depend on the other clips of its batch.

Nothing is downloaded (``local_files_only``) and only safetensors weights are loaded (``use_safetensors``),
never pickles. Models are loaded once per process and device (:func:`bench.metrics._models.load_cached`);
a backend built again for the same folder and device reuses the loaded model.

Choose a backend for the ``asr=`` option of ``wer`` with ``"pocketsphinx[:HMM_DIR]"`` (or for a whole run
with ``BENCH_ASR_BACKEND``); the strong recognisers are their own metrics (``wer_whisper``, ``wer_hubert``
in :mod:`bench.metrics.wer_strong`), so a value of one recogniser never stands under another's name.

Add a recogniser by subclassing :class:`AsrBackend` and calling :func:`register_asr_backend`.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

ASR_SAMPLE_RATE_HZ = 16000
ENV_BACKEND = "BENCH_ASR_BACKEND"
DEFAULT_BACKEND = "pocketsphinx"
#: most tokens Whisper may write for one 30 s window (openai-whisper's ``sample_len`` = n_text_ctx // 2)
WHISPER_MAX_NEW_TOKENS = 224
#: most windows in one forward / generate call
DEFAULT_MAX_BATCH = 16


class AsrError(RuntimeError):
    """A recogniser that cannot be built or run; the message says how to fix it."""


class AsrBackend(ABC):
    """Transcribes mono float32 audio at :attr:`sample_rate_hz` to text."""

    name: str = ""
    sample_rate_hz: int = ASR_SAMPLE_RATE_HZ

    @abstractmethod
    def transcribe(self, wav: np.ndarray) -> str:
        """Return the transcript of ``wav`` (1-D float32 in [-1, 1] at ``sample_rate_hz``)."""

    def transcribe_batch(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of several clips; batched backends override this with one model call."""
        return [self.transcribe(w) for w in wavs]

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


def split_windows(wavs: Sequence[np.ndarray], window_samples: int) -> list[tuple[int, np.ndarray]]:
    """(clip index, window) for consecutive ``window_samples`` windows of each clip; an empty clip gives one."""
    out: list[tuple[int, np.ndarray]] = []
    for i, wav in enumerate(wavs):
        wav = np.asarray(wav, dtype=np.float32)
        out += [(i, wav[s:s + window_samples]) for s in range(0, max(len(wav), 1), window_samples)]
    return out


def join_windows(owners: Sequence[int], texts: Sequence[str], n_clips: int) -> list[str]:
    """Each clip's window texts, stripped and joined by single spaces, in window order."""
    parts: list[list[str]] = [[] for _ in range(n_clips)]
    for i, text in zip(owners, texts):
        if text.strip():
            parts[i].append(text.strip())
    return [" ".join(p) for p in parts]


def check_model_dir(model_path: str, kind: str) -> Path:
    """``model_path`` as a folder with ``config.json`` and safetensors weights; AsrError saying what is wrong."""
    path = Path(model_path)
    if not path.is_dir():
        raise AsrError(f"{kind} model directory not found: {model_path} "
                       "(expected a Hugging Face-format folder with config.json and model.safetensors)")
    if not any(path.glob("*.safetensors")):
        raise AsrError(f"{model_path}: no *.safetensors weights; only safetensors are loaded "
                       "(convert the checkpoint, never load pickled weights)")
    return path


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' logging at error level and no progress bars inside the block.

    ``generate`` warns on every call about its own internals and loading draws a bar per model: noise in a
    run's log, not news about the values.
    """
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _require_transformers(kind: str) -> None:
    """AsrError naming the pip install when transformers is missing."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise AsrError(f"the {kind} ASR backend needs transformers: pip install transformers")


def _build_whisper(folder: Path, device: str) -> tuple[Any, Any]:
    """(WhisperForConditionalGeneration in eval mode on ``device``, WhisperProcessor) from a local folder.

    float32 whatever the checkpoint stores (whisper-large-v3 ships float16): the same arithmetic on every device.
    """
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    with quiet_transformers():
        processor = WhisperProcessor.from_pretrained(folder, local_files_only=True)
        model: Any = WhisperForConditionalGeneration.from_pretrained(folder, local_files_only=True,
                                                                     use_safetensors=True, dtype=torch.float32)
    return model.to(device).eval(), processor  # (transformers' stubs type .to() on the class wrongly)


class WhisperBackend(AsrBackend):
    """Whisper from a local Hugging Face-format directory via ``transformers``, batched (module docstring)."""

    name = "whisper"
    window_s = 30.0

    def __init__(self, model_path: str, language: str = "en", device: str = "cpu", num_beams: int = 1,
                 max_new_tokens: int = WHISPER_MAX_NEW_TOKENS, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if not model_path:
            raise AsrError("whisper backend needs a local model directory: asr='whisper:/path/to/model'")
        self.model_path = str(model_path)
        self.language, self.device, self.num_beams = language, str(device), int(num_beams)
        self.max_new_tokens, self.max_batch = int(max_new_tokens), max(1, int(max_batch))
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        from bench.metrics._models import load_cached

        path = check_model_dir(self.model_path, "whisper")
        _require_transformers("whisper")
        loaded: tuple[Any, Any] = load_cached("whisper-asr", path, self.device, _build_whisper)
        return loaded

    def settings(self) -> dict[str, Any]:
        """The decoding settings: each changes the transcripts, so they go into the metric's model info."""
        return {"language": self.language, "num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens,
                "window_s": self.window_s, "timestamps": False}

    def transcribe(self, wav: np.ndarray) -> str:
        """Whisper transcript of ``wav`` (30 s windows joined by spaces)."""
        return self.transcribe_batch([wav])[0]

    def transcribe_batch(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of several clips: all their 30 s windows through ``generate``, ``max_batch`` a call."""
        windows = split_windows(wavs, int(self.window_s * self.sample_rate_hz))
        texts: list[str] = []
        with self._lock:
            model, processor = self._load()
            for k in range(0, len(windows), self.max_batch):
                texts += self._generate(model, processor, [w for _, w in windows[k:k + self.max_batch]])
        return join_windows([i for i, _ in windows], texts, len(wavs))

    def _generate(self, model: Any, processor: Any, chunk: list[np.ndarray]) -> list[str]:
        """One ``generate`` call over windows of at most 30 s (each zero-padded to 30 s by the feature extractor)."""
        import torch

        feats = processor.feature_extractor(chunk, sampling_rate=self.sample_rate_hz, return_tensors="pt")
        kwargs: dict[str, Any] = {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens}
        if getattr(model.generation_config, "is_multilingual", True):  # an English-only (.en) model takes neither
            kwargs.update(language=self.language, task="transcribe")
        with torch.inference_mode(), quiet_transformers():
            ids = model.generate(feats.input_features.to(self.device, model.dtype), **kwargs)
        decoded: list[str] = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [t.strip() for t in decoded]

    def describe(self) -> str:
        """Whisper checkpoint folder name, decoding and transformers version, recorded with each value."""
        from importlib.metadata import version

        return (f"whisper {Path(self.model_path).name} (transformers {version('transformers')}, "
                f"greedy={self.num_beams == 1} beams={self.num_beams} language={self.language})")


def _build_hubert(folder: Path, device: str) -> tuple[Any, Any]:
    """(HubertForCTC in eval mode on ``device``, Wav2Vec2Processor) from a local folder."""
    import torch
    from transformers import HubertForCTC, Wav2Vec2Processor

    with quiet_transformers():
        processor = Wav2Vec2Processor.from_pretrained(folder, local_files_only=True)
        model: Any = HubertForCTC.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                  dtype=torch.float32)
    return model.to(device).eval(), processor


class HubertBackend(AsrBackend):
    """A CTC recogniser (HuBERT fine-tuned on LibriSpeech) from a local folder, greedy CTC decoding, batched."""

    name = "hubert"
    window_s = 60.0

    def __init__(self, model_path: str, device: str = "cpu", max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if not model_path:
            raise AsrError("hubert backend needs a local model directory: asr='hubert:/path/to/model'")
        self.model_path, self.device, self.max_batch = str(model_path), str(device), max(1, int(max_batch))
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        from bench.metrics._models import load_cached

        path = check_model_dir(self.model_path, "hubert")
        _require_transformers("hubert")
        loaded: tuple[Any, Any] = load_cached("hubert-ctc", path, self.device, _build_hubert)
        return loaded

    def settings(self) -> dict[str, Any]:
        """The decoding settings recorded in the metric's model info."""
        return {"decoding": "greedy ctc", "window_s": self.window_s}

    def transcribe(self, wav: np.ndarray) -> str:
        """CTC transcript of ``wav`` (60 s windows joined by spaces)."""
        return self.transcribe_batch([wav])[0]

    def transcribe_batch(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of several clips; windows of equal length share a forward pass (never padded)."""
        windows = split_windows(wavs, int(self.window_s * self.sample_rate_hz))
        by_length: dict[int, list[int]] = {}
        for k, (_, w) in enumerate(windows):
            by_length.setdefault(len(w), []).append(k)
        texts = [""] * len(windows)
        with self._lock:
            model, processor = self._load()
            for ks in by_length.values():
                for j in range(0, len(ks), self.max_batch):
                    part = ks[j:j + self.max_batch]
                    for k, text in zip(part, self._forward(model, processor, [windows[k][1] for k in part])):
                        texts[k] = text
        return join_windows([i for i, _ in windows], texts, len(wavs))

    def _forward(self, model: Any, processor: Any, chunk: list[np.ndarray]) -> list[str]:
        """Greedy CTC transcripts of equal-length windows in one forward pass."""
        import torch

        feats = processor.feature_extractor(chunk, sampling_rate=self.sample_rate_hz, return_tensors="pt")
        kwargs: dict[str, Any] = {}
        if "attention_mask" in feats:  # all ones (equal lengths); passed as the processor means it
            kwargs["attention_mask"] = feats["attention_mask"].to(self.device)
        with torch.inference_mode():
            logits = model(feats["input_values"].to(self.device, model.dtype), **kwargs).logits
        decoded: list[str] = processor.tokenizer.batch_decode(logits.argmax(dim=-1).cpu(), skip_special_tokens=True)
        return [t.strip() for t in decoded]

    def describe(self) -> str:
        """Checkpoint folder name and transformers version, recorded with each value."""
        from importlib.metadata import version

        return f"hubert-ctc {Path(self.model_path).name} (transformers {version('transformers')}, greedy ctc)"


_FACTORIES: dict[str, Callable[[str], AsrBackend]] = {
    "pocketsphinx": lambda arg: PocketSphinxBackend(hmm=arg or None),
    "whisper": lambda arg: WhisperBackend(arg),
    "hubert": lambda arg: HubertBackend(arg),
}
_CACHE: dict[str, AsrBackend] = {}
_CACHE_LOCK = threading.Lock()


def register_asr_backend(name: str, factory: Callable[[str], AsrBackend]) -> None:
    """Make ``name[:argument]`` usable as ``asr=`` option; ``factory(argument)`` builds the backend."""
    _FACTORIES[name] = factory


def asr_backend_names() -> list[str]:
    """Names usable before the colon of an ``asr=`` spec, sorted (for help texts and typo hints)."""
    return sorted(_FACTORIES)


def backend_spec(spec: str | None = None) -> str:
    """The backend spec in force: ``spec``, else ``$BENCH_ASR_BACKEND``, else pocketsphinx (stripped)."""
    return (spec or os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND).strip()


def get_asr_backend(spec: str | AsrBackend | None = None) -> AsrBackend:
    """Backend for ``"name"`` or ``"name:argument"``; None = ``$BENCH_ASR_BACKEND`` or pocketsphinx.

    The instance is cached per process, so a pocketsphinx decoder or a Whisper model is loaded once.
    """
    if isinstance(spec, AsrBackend):
        return spec
    spec = backend_spec(spec)
    name, _, arg = spec.partition(":")
    if name not in _FACTORIES:
        from bench.registry import did_you_mean

        raise AsrError(f"unknown ASR backend {name!r}.{did_you_mean(name, asr_backend_names())}")
    with _CACHE_LOCK:
        if spec not in _CACHE:
            _CACHE[spec] = _FACTORIES[name](arg)
        return _CACHE[spec]
