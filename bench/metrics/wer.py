"""Word and character error rate of a PocketSphinx transcript of the reconstruction (``wer``, ``cer``).

Definition (pinned):

* The reconstruction (``preds``, 16 kHz mono) is transcribed by PocketSphinx 5 with its bundled en-us
  model (:mod:`bench.metrics.asr`), the recogniser that works offline with no download: the offline
  fallback. The strong recognisers are metrics of their own (``wer_whisper``, ``wer_hubert``:
  :mod:`bench.metrics.wer_strong`), so a value of one recogniser never resumes as another's.
  The reference audio is not used: the reference text is the item's own transcript (``Item.transcript``,
  or the option ``transcripts=[...]``).
* Both texts pass through :func:`bench.metrics.text_norm.normalize_transcript` (bench's rules, version
  ``NORMALISER_VERSION``; same rules both sides). The strong-ASR metrics use Whisper's English
  normaliser instead; the normaliser of each metric is in its model info (fingerprint and manifest).
* ``wer`` = (S + D + I) / N over words, ``cer`` = (S + D + I) / N over characters of the normalised string
  including the single spaces between words, both from a Levenshtein alignment (``jiwer`` 3/4
  ``process_words`` / ``process_characters``). Unit: **fraction** (0 = perfect; can exceed 1 when the
  hypothesis has many insertions). Lower is better.
* Per-item values. A corpus-level WER (total errors / total reference words) can be rebuilt from the
  ``errors`` and ``ref_len`` extras of each row.

Unscorable items give NaN with a reason, never 0: no transcript, a transcript that normalises to nothing,
a reconstruction shorter than 0.1 s, or a digitally silent reconstruction (peak below 1e-6; PocketSphinx
would "hear" filler words in silence).

The recogniser: ``BENCH_ASR_BACKEND=pocketsphinx:HMM_DIR`` (or the option ``asr=``) swaps the acoustic
model; the metric's model info describes the recogniser in force, so the fingerprint follows it. Any
other backend there (``whisper:...``) fails every item with a reason pointing to ``wer_whisper``: ``wer``
never silently becomes another recogniser's WER.

Absolute numbers depend on the recogniser: PocketSphinx WER on clean read speech is roughly 0.2-0.35, far
above Whisper's; use it to compare codecs against each other and against the uncoded reference, and report
the backend (recorded in each row's ``asr`` extra) with the numbers.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np
import torch

from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric
from bench.metrics.text_norm import NORMALISER_VERSION, bench_normaliser_info, normalize_transcript

WER_SAMPLE_RATE_HZ = 16000
MIN_DURATION_S = 0.1
SILENCE_PEAK = 1e-6

_HYP_CACHE: "OrderedDict[tuple[int, str], tuple[Any, str]]" = OrderedDict()
_HYP_CACHE_SIZE = 512


def _audio_key(wav: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()


def transcribe_cached(backend: Any, wavs: Sequence[np.ndarray]) -> list[str]:
    """Hypotheses of ``backend`` for ``wavs``; the clips not cached go to one ``transcribe_batch`` call.

    The cache (per process, last 512 clips) lets ``wer`` and ``cer`` of one recogniser share a transcription.
    Its entries hold the backend, so the backend's ``id`` in the key cannot be reused by another object.
    """
    keys = [(id(backend), _audio_key(w)) for w in wavs]
    missing = [k for k, key in enumerate(keys) if key not in _HYP_CACHE]
    if missing:
        for k, hyp in zip(missing, backend.transcribe_batch([wavs[k] for k in missing])):
            _HYP_CACHE[keys[k]] = (backend, hyp)
    hyps = []
    for key in keys:
        _HYP_CACHE.move_to_end(key)
        hyps.append(_HYP_CACHE[key][1])
    while len(_HYP_CACHE) > _HYP_CACHE_SIZE:
        _HYP_CACHE.popitem(last=False)
    return hyps


def transcribe(wav: np.ndarray, asr: Any = None) -> tuple[str, str]:
    """(hypothesis, backend description) for 16 kHz mono audio (``asr`` as :func:`get_asr_backend` takes it)."""
    from bench.metrics.asr import get_asr_backend

    backend = get_asr_backend(asr)
    return transcribe_cached(backend, [wav])[0], backend.describe()


def reference_texts(batch: int, items: Sequence[Any] | None, transcripts: Sequence[str | None] | None
                    ) -> list[str | None]:
    """The raw reference transcripts of a batch: ``transcripts`` when given, else each item's ``transcript``."""
    if transcripts is not None:
        if len(transcripts) != batch:
            raise MetricError(f"got {len(transcripts)} transcripts for {batch} items")
        return list(transcripts)
    if items is None:
        raise MetricError("wer/cer need the items' transcripts (items=[Item...] or transcripts=[...])")
    if len(items) != batch:
        raise MetricError(f"got {len(items)} items for a batch of {batch}")
    return [getattr(it, "transcript", None) for it in items]


def _item_name(items: Sequence[Any] | None, i: int) -> str:
    return getattr(items[i], "id", f"#{i}") if items is not None else f"#{i}"


def _unscorable(name: str, ref_raw: str | None, ref: str, wav: np.ndarray) -> str | None:
    """Why an item cannot be scored (no transcript, empty after normalisation, short, non-finite, silent)."""
    if ref_raw is None or not str(ref_raw).strip():
        return f"{name}: item has no transcript"
    if not ref:
        return f"{name}: transcript {ref_raw!r} is empty after normalisation"
    if len(wav) < MIN_DURATION_S * WER_SAMPLE_RATE_HZ:
        return f"{name}: clip of {len(wav) / WER_SAMPLE_RATE_HZ:.3f} s is shorter than {MIN_DURATION_S} s"
    if not np.all(np.isfinite(wav)):
        return f"{name}: reconstruction contains NaN/Inf samples"
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        return f"{name}: reconstruction is silent (peak < {SILENCE_PEAK:g})"
    return None


def check_batch(preds: torch.Tensor, sample_rate_hz: int | None) -> np.ndarray:
    """``preds`` [B, T] at 16 kHz as float32 numpy rows; MetricError (the whole batch fails) otherwise."""
    if preds.dim() != 2:
        raise MetricError(f"expected preds [B, T], got shape {tuple(preds.shape)}")
    if sample_rate_hz not in (None, WER_SAMPLE_RATE_HZ):
        raise MetricError(f"ASR error rates run at {WER_SAMPLE_RATE_HZ} Hz, got {sample_rate_hz} Hz")
    rows: np.ndarray = preds.detach().to(torch.float32).cpu().numpy()
    return rows


def score_transcripts(wavs: np.ndarray, refs: Sequence[str | None], items: Sequence[Any] | None, *, unit: str,
                      backend: Any, normalise: Callable[[str], str], extra: dict[str, Any]) -> list[MetricValue]:
    """Per-item error rates of ``backend``'s transcripts of ``wavs`` against ``refs``, both ``normalise``-d.

    The scorable items are transcribed together (one ``transcribe_batch`` call for the uncached ones);
    each value carries the alignment counts, both normalised texts, the raw hypothesis and ``extra``.
    """
    import jiwer  # noqa: F401 - fail the whole batch before any transcription when jiwer is missing

    out: list[MetricValue | None] = [None] * len(wavs)
    live: list[tuple[int, str]] = []
    for i, (wav, ref_raw) in enumerate(zip(wavs, refs)):
        ref = normalise(ref_raw) if ref_raw is not None else ""
        reason = _unscorable(_item_name(items, i), ref_raw, ref, wav)
        if reason is not None:
            out[i] = failed(reason)
        else:
            live.append((i, ref))
    hyps_raw = transcribe_cached(backend, [wavs[i] for i, _ in live]) if live else []
    for (i, ref), hyp_raw in zip(live, hyps_raw):
        hyp = normalise(hyp_raw)
        value, ref_len, (subs, dels, ins) = _align(ref, hyp, unit)
        out[i] = MetricValue(float(value), extra={
            "hypothesis": hyp, "reference": ref, "hypothesis_raw": hyp_raw, "errors": int(subs + dels + ins),
            "ref_len": int(ref_len), "substitutions": int(subs), "deletions": int(dels), "insertions": int(ins),
            **extra})
    return [v if v is not None else failed("not scored") for v in out]


def _align(ref: str, hyp: str, unit: str) -> tuple[float, int, tuple[int, int, int]]:
    """(error rate, reference length, (substitutions, deletions, insertions)) of a jiwer alignment.

    ``unit`` "word" aligns words (WER, length in words); anything else aligns characters (CER, length in
    characters including the single spaces).
    """
    import jiwer

    if unit == "word":
        words = jiwer.process_words(ref, hyp)
        return words.wer, len(ref.split()), (words.substitutions, words.deletions, words.insertions)
    chars = jiwer.process_characters(ref, hyp)
    return chars.cer, len(ref), (chars.substitutions, chars.deletions, chars.insertions)


def pocketsphinx_backend(asr: Any = None) -> Any:
    """The recogniser of ``wer``/``cer``: an AsrBackend given as ``asr``, else a ``pocketsphinx[:HMM]`` spec.

    The spec is ``asr`` or ``$BENCH_ASR_BACKEND`` (default ``pocketsphinx``); a spec naming another
    recogniser raises MetricError pointing to the metric that uses it.
    """
    from bench.metrics.asr import AsrBackend, backend_spec, get_asr_backend

    if isinstance(asr, AsrBackend):
        return asr
    spec = backend_spec(asr)
    name = spec.partition(":")[0]
    if name != "pocketsphinx":
        where = "asr=" if asr else "BENCH_ASR_BACKEND="
        raise MetricError(f"wer/cer are PocketSphinx error rates, but {where}{spec!r} names {name!r}; "
                          "use the metrics wer_whisper/cer_whisper (weights: BENCH_WHISPER_MODEL) or "
                          "wer_hubert/cer_hubert (BENCH_HUBERT_MODEL) instead")
    return get_asr_backend(spec)


def pocketsphinx_info() -> dict[str, Any]:
    """Model info of ``wer``/``cer``: the recogniser in force (version, model, search cap) and the normaliser."""
    try:
        backend = pocketsphinx_backend()
    except MetricError as exc:
        return {"model": "pocketsphinx", "error": str(exc)}
    return {"model": backend.describe(), **bench_normaliser_info()}


def _pocketsphinx_rate(preds: torch.Tensor, sample_rate_hz: int | None, items: Sequence[Any] | None,
                       transcripts: Sequence[str | None] | None, asr: Any, unit: str) -> list[MetricValue]:
    wavs = check_batch(preds, sample_rate_hz)
    refs = reference_texts(wavs.shape[0], items, transcripts)
    backend = pocketsphinx_backend(asr)
    return score_transcripts(wavs, refs, items, unit=unit, backend=backend, normalise=normalize_transcript,
                             extra={"asr": backend.describe(), "normaliser": f"bench.text_norm {NORMALISER_VERSION}"})


def wer(preds: torch.Tensor, target: torch.Tensor | None = None, *, sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ,
        items: Sequence[Any] | None = None, transcripts: Sequence[str | None] | None = None,
        asr: Any = None, **_: Any) -> list[MetricValue]:
    """Word error rate (fraction) of PocketSphinx(``preds``) against each item's transcript; ``target`` is unused.

    ``asr``: ``"pocketsphinx[:HMM_DIR]"`` or an AsrBackend instance (tests, experiments).
    """
    return _pocketsphinx_rate(preds, sample_rate_hz, items, transcripts, asr, "word")


def cer(preds: torch.Tensor, target: torch.Tensor | None = None, *, sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ,
        items: Sequence[Any] | None = None, transcripts: Sequence[str | None] | None = None,
        asr: Any = None, **_: Any) -> list[MetricValue]:
    """Character error rate (fraction, spaces counted) of PocketSphinx(``preds``) against each item's transcript."""
    return _pocketsphinx_rate(preds, sample_rate_hz, items, transcripts, asr, "char")


#: what every ASR error-rate spec shares (the strong-ASR metrics reuse it)
COMMON_SPEC: dict[str, Any] = dict(higher_is_better=False, unit="fraction", sample_rate_hz=WER_SAMPLE_RATE_HZ,
                                   needs_reference=False, valid_range=(0.0, float("inf")), domains=("speech",),
                                   needs_transcript=True, min_duration_s=MIN_DURATION_S)
_POCKETSPHINX: dict[str, Any] = dict(COMMON_SPEC, requires=("pocketsphinx", "jiwer"), model_info=pocketsphinx_info,
                                     version=f"1+norm{NORMALISER_VERSION}")

register_metric(MetricSpec(
    name="wer", fn=wer, **_POCKETSPHINX, display_name="WER (PocketSphinx, offline fallback)",
    source="PocketSphinx 5 en-us (bundled) + jiwer word Levenshtein; bench.metrics.text_norm",
    description="word error rate of a PocketSphinx transcript of the reconstruction vs the item transcript"))
register_metric(MetricSpec(
    name="cer", fn=cer, **_POCKETSPHINX, display_name="CER (PocketSphinx, offline fallback)",
    source="PocketSphinx 5 en-us (bundled) + jiwer character Levenshtein; bench.metrics.text_norm",
    description="character error rate (spaces counted) of a PocketSphinx transcript vs the item transcript"))
