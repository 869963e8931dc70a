"""Transcript normalisation for WER/CER, applied identically to the reference and the ASR hypothesis.

Why: ASR systems and corpora disagree on case, punctuation, spelled-out numbers and a handful of
abbreviations ("Mr." vs "mister"). Scoring raw strings would count those as word errors that say
nothing about the codec. The rules are deliberately small, deterministic and English-only:

1. Unicode NFKD; combining marks dropped (``café`` -> ``cafe``); lower case.
2. Bracketed annotations removed: ``<s>``, ``</s>``, ``<sil>``, ``[noise]``, ``(laughter)``, ``{breath}``.
3. ``&`` -> ``and``, ``%`` -> ``percent``; thousands separators removed (``1,000`` -> ``1000``).
4. Numbers spelled out in words: integers (``1905`` -> ``one thousand nine hundred five``), decimals
   (``3.5`` -> ``three point five``), ordinals (``21st`` -> ``twenty first``). Years are not read as
   "nineteen oh five": one rule for every number, so both sides agree whatever the corpus did.
5. Apostrophes are deleted inside words (``don't`` -> ``dont``, ``john's`` -> ``johns``); contractions are
   not expanded, because "he's" is ambiguous (he is / he has).
6. A few title abbreviations are expanded: mr -> mister, mrs -> missus, dr -> doctor,
   st -> saint, messrs -> messieurs (the forms LibriSpeech transcripts and CMU dictionaries use).
7. Hyphens and every other non-alphanumeric character become spaces; whitespace collapses to one space.

The result is a string of lower-case ASCII words separated by single spaces (possibly empty).
``NORMALISER_VERSION`` changes whenever a rule changes, so WER rows remain comparable only within a version.
These rules serve the PocketSphinx ``wer``/``cer`` (whose dictionary spells numbers out).

Whisper's English normaliser (:func:`normalize_whisper`) serves the strong-ASR metrics (``wer_whisper``,
``wer_hubert``, ...): the ``EnglishTextNormalizer`` of Radford et al. 2022, "Robust Speech Recognition via
Large-Scale Weak Supervision", appendix C (openai/whisper ``whisper/normalizers/english.py``), the text
standardisation behind the WER figures of Whisper and of most codec papers. It removes bracketed text and
fillers (hmm, uh, um), expands contractions (won't -> will not, I'm -> i am), standardises numbers and
currencies to digits (twenty five -> 25, three dollars and fifty cents -> $3.50), maps British to American spellings
(colour -> color) and removes remaining punctuation and diacritics. Implementation: ``transformers``'
``EnglishTextNormalizer`` (a line-for-line port of openai-whisper's; the tests compare it with openai-whisper
itself), with the British-American spelling map ``english.json`` that the ``whisper-normalizer`` package
bundles (byte-identical to openai-whisper's; its SHA-256 is recorded by :func:`whisper_normaliser_info`).
``whisper-normalizer``'s own ``EnglishTextNormalizer`` is not used: since 0.1 it adds rules openai's does
not have (kinda, sorta, dunno, and ``cause`` -> ``because``, which also rewrites "the cause").
The result is then stripped and its whitespace collapsed to single spaces (CER counts those spaces).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Any, Callable

NORMALISER_VERSION = "1"
#: names recorded with each WER value and in the metric's model info (the manifest)
BENCH_NORMALISER = "bench.text_norm"
WHISPER_NORMALISER = "whisper-english"
#: where ``whisper-normalizer`` keeps the spelling map, newest layout first
_SPELLING_MAP_PATHS = (("normalizers", "english.json"), ("english.json",))

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "messrs": "messieurs"}

_BRACKETED = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|\([^()]*\)|\{[^{}]*\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_INTEGER = re.compile(r"\d+")
_APOSTROPHE = re.compile(r"(?<=[a-z0-9])['\u2019](?=[a-z0-9])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Cardinal English words for a non-negative integer (short scale, no "and")."""
    if n < 0:
        raise ValueError(f"number_to_words takes a non-negative integer, got {n}")
    if n >= 10 ** 15:  # read very long digit strings digit by digit
        return " ".join(_ONES[int(d)] for d in str(n))
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += _below_thousand(n // scale) + [name]
            n %= scale
    if n or not words:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Ordinal English words: 1 -> first, 21 -> twenty first, 100 -> one hundredth."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits_to_words(digits: str) -> str:
    # leading zeros ("007") are read digit by digit; other numbers as cardinals
    if len(digits) > 1 and digits.startswith("0"):
        return " ".join(_ONES[int(d)] for d in digits)
    return number_to_words(int(digits))


def normalize_transcript(text: str) -> str:
    """Normalise a transcript or ASR hypothesis (rules in the module docstring)."""
    if text is None:
        return ""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _BRACKETED.sub(" ", text)
    text = text.replace("&", " and ").replace("%", " percent ")
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL.sub(lambda m: f" {_digits_to_words(m.group(1))} point "
                                  f"{' '.join(_ONES[int(d)] for d in m.group(2))} ", text)
    text = _ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", text)
    text = _INTEGER.sub(lambda m: f" {_digits_to_words(m.group(0))} ", text)
    text = _APOSTROPHE.sub("", text)
    words = _NON_WORD.sub(" ", text).split()
    words = [_ABBREVIATIONS.get(w, w) for w in words]
    return " ".join(words)


def _spelling_map_text() -> str:
    """The text of the British->American spelling map bundled with ``whisper-normalizer`` (ImportError if absent)."""
    from importlib.resources import files

    try:
        root = files("whisper_normalizer")
    except ModuleNotFoundError as exc:
        raise ImportError("Whisper's English normaliser needs its spelling map: pip install whisper-normalizer") from exc
    for parts in _SPELLING_MAP_PATHS:
        path = root.joinpath(*parts)
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ImportError("the installed whisper-normalizer has no english.json spelling map; "
                      "pip install 'whisper-normalizer>=0.1.15'")


@lru_cache(maxsize=1)
def whisper_normaliser() -> Callable[[str], str]:
    """Whisper's ``EnglishTextNormalizer`` (transformers' port) with openai's spelling map; built once per process."""
    import json

    try:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
    except ImportError as exc:
        raise ImportError("Whisper's English normaliser needs transformers: pip install transformers") from exc
    normaliser: Callable[[str], str] = EnglishTextNormalizer(json.loads(_spelling_map_text()))
    return normaliser


def normalize_whisper(text: str | None) -> str:
    """Whisper's English normalisation of ``text``, stripped, whitespace collapsed (rules in the module docstring)."""
    if text is None:
        return ""
    return " ".join(whisper_normaliser()(str(text)).split())


@lru_cache(maxsize=1)
def whisper_normaliser_info() -> dict[str, Any]:
    """Name and versions of Whisper's normaliser as used here: what decides its output, for the fingerprint."""
    from importlib.metadata import version

    return {"normaliser": WHISPER_NORMALISER,
            "normaliser_version": f"transformers {version('transformers')} EnglishTextNormalizer; "
                                  f"spelling map whisper-normalizer {version('whisper-normalizer')}",
            "spelling_map_sha256": hashlib.sha256(_spelling_map_text().encode("utf-8")).hexdigest()}


def bench_normaliser_info() -> dict[str, Any]:
    """Name and version of this module's own rules (the PocketSphinx ``wer``/``cer``)."""
    return {"normaliser": BENCH_NORMALISER, "normaliser_version": NORMALISER_VERSION}
