"""Word and character error rate of an ASR transcript of the reconstruction (``wer``, ``cer``).

Definition (pinned):

* The reconstruction (``preds``, 16 kHz mono) is transcribed by an ASR backend (:mod:`bench.metrics.asr`;
  default PocketSphinx 5 with its bundled en-us model). The reference audio is not used: the reference
  text is the item's own transcript (``Item.transcript``, or the option ``transcripts=[...]``).
* Both texts pass through :func:`bench.metrics.text_norm.normalize_transcript` (same rules both sides).
* ``wer`` = (S + D + I) / N over words, ``cer`` = (S + D + I) / N over characters of the normalised string
  including the single spaces between words, both from a Levenshtein alignment (``jiwer`` 3/4
  ``process_words`` / ``process_characters``). Unit: **fraction** (0 = perfect; can exceed 1 when the
  hypothesis has many insertions). Lower is better.
* Per-item values. A corpus-level WER (total errors / total reference words) can be rebuilt from the
  ``errors`` and ``ref_len`` extras of each row.

Unscorable items give NaN with a reason, never 0: no transcript, a transcript that normalises to nothing,
a reconstruction shorter than 0.1 s, or a digitally silent reconstruction (peak below 1e-6; PocketSphinx
would "hear" filler words in silence).

Absolute numbers depend on the recogniser: PocketSphinx WER on clean read speech is roughly 0.2-0.35, far
above Whisper's; use it to compare codecs against each other and against the uncoded reference, and report
the backend (recorded in each row's ``asr`` extra) with the numbers.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric
from bench.metrics.text_norm import NORMALISER_VERSION, normalize_transcript

WER_SAMPLE_RATE_HZ = 16000
MIN_DURATION_S = 0.1
SILENCE_PEAK = 1e-6

_HYP_CACHE: "OrderedDict[tuple[int, str], tuple[Any, str]]" = OrderedDict()
_HYP_CACHE_SIZE = 512


def _audio_key(wav: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()


def transcribe(wav: np.ndarray, asr: Any = None) -> tuple[str, str]:
    """(hypothesis, backend description) for 16 kHz mono audio; cached so ``wer`` and ``cer`` share it."""
    from bench.metrics.asr import get_asr_backend

    backend = get_asr_backend(asr)
    desc = backend.describe()
    key = (id(backend), _audio_key(wav))  # the entry holds the backend, so its id cannot be reused
    if key in _HYP_CACHE:
        _HYP_CACHE.move_to_end(key)
        return _HYP_CACHE[key][1], desc
    hyp = backend.transcribe(wav)
    _HYP_CACHE[key] = (backend, hyp)
    if len(_HYP_CACHE) > _HYP_CACHE_SIZE:
        _HYP_CACHE.popitem(last=False)
    return hyp, desc


def _reference_texts(batch: int, items: Sequence[Any] | None, transcripts: Sequence[str | None] | None
                     ) -> list[str | None]:
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


def _error_rate(preds: torch.Tensor, *, sample_rate_hz: int | None, items: Sequence[Any] | None,
                transcripts: Sequence[str | None] | None, asr: Any, unit: str) -> list[MetricValue]:
    import jiwer  # noqa: F401 - fail the whole batch before any transcription when jiwer is missing

    if preds.dim() != 2:
        raise MetricError(f"expected preds [B, T], got shape {tuple(preds.shape)}")
    if sample_rate_hz not in (None, WER_SAMPLE_RATE_HZ):
        raise MetricError(f"wer/cer run at {WER_SAMPLE_RATE_HZ} Hz, got {sample_rate_hz} Hz")
    refs = _reference_texts(preds.shape[0], items, transcripts)
    wavs = preds.detach().to(torch.float32).cpu().numpy()
    out: list[MetricValue] = []
    for i, (wav, ref_raw) in enumerate(zip(wavs, refs)):
        name = _item_name(items, i)
        if ref_raw is None or not str(ref_raw).strip():
            out.append(failed(f"{name}: item has no transcript"))
            continue
        ref = normalize_transcript(ref_raw)
        if not ref:
            out.append(failed(f"{name}: transcript {ref_raw!r} is empty after normalisation"))
            continue
        if len(wav) < MIN_DURATION_S * WER_SAMPLE_RATE_HZ:
            out.append(failed(f"{name}: clip of {len(wav) / WER_SAMPLE_RATE_HZ:.3f} s is shorter than "
                              f"{MIN_DURATION_S} s"))
            continue
        if not np.all(np.isfinite(wav)):
            out.append(failed(f"{name}: reconstruction contains NaN/Inf samples"))
            continue
        if float(np.max(np.abs(wav))) < SILENCE_PEAK:
            out.append(failed(f"{name}: reconstruction is silent (peak < {SILENCE_PEAK:g})"))
            continue
        hyp_raw, backend = transcribe(wav, asr)
        hyp = normalize_transcript(hyp_raw)
        value, ref_len, (subs, dels, ins) = _align(ref, hyp, unit)
        errors = subs + dels + ins
        out.append(MetricValue(float(value), extra={
            "hypothesis": hyp, "reference": ref, "errors": int(errors), "ref_len": int(ref_len),
            "substitutions": int(subs), "deletions": int(dels),
            "insertions": int(ins), "asr": backend, "normaliser": NORMALISER_VERSION}))
    return out


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


def wer(preds: torch.Tensor, target: torch.Tensor | None = None, *, sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ,
        items: Sequence[Any] | None = None, transcripts: Sequence[str | None] | None = None,
        asr: Any = None, **_: Any) -> list[MetricValue]:
    """Word error rate (fraction) of ASR(``preds``) against each item's transcript; ``target`` is unused.

    ``asr``: backend spec (``"pocketsphinx"``, ``"whisper:/local/dir"``) or an AsrBackend instance.
    """
    return _error_rate(preds, sample_rate_hz=sample_rate_hz, items=items, transcripts=transcripts,
                       asr=asr, unit="word")


def cer(preds: torch.Tensor, target: torch.Tensor | None = None, *, sample_rate_hz: int | None = WER_SAMPLE_RATE_HZ,
        items: Sequence[Any] | None = None, transcripts: Sequence[str | None] | None = None,
        asr: Any = None, **_: Any) -> list[MetricValue]:
    """Character error rate (fraction, spaces counted) of ASR(``preds``) against each item's transcript."""
    return _error_rate(preds, sample_rate_hz=sample_rate_hz, items=items, transcripts=transcripts,
                       asr=asr, unit="char")


_COMMON: dict[str, Any] = dict(higher_is_better=False, unit="fraction", sample_rate_hz=WER_SAMPLE_RATE_HZ,
               needs_reference=False, valid_range=(0.0, float("inf")), domains=("speech",),
               needs_transcript=True, min_duration_s=MIN_DURATION_S, requires=("pocketsphinx", "jiwer"),
               version=f"1+norm{NORMALISER_VERSION}")

register_metric(MetricSpec(
    name="wer", fn=wer, **_COMMON,
    source="ASR (PocketSphinx 5 en-us by default) + jiwer word Levenshtein; bench.metrics.text_norm",
    description="word error rate of an ASR transcript of the reconstruction vs the item transcript"))
register_metric(MetricSpec(
    name="cer", fn=cer, **_COMMON,
    source="ASR (PocketSphinx 5 en-us by default) + jiwer character Levenshtein; bench.metrics.text_norm",
    description="character error rate (spaces counted) of an ASR transcript vs the item transcript"))
