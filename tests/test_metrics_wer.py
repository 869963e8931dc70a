"""wer / cer: text normalisation, ASR backends, and PocketSphinx WER on real LibriVox speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.datasets.base import Item
from bench.metrics.base import compute, get_metric
from bench.metrics.text_norm import normalize_transcript, number_to_words, ordinal_to_words
from shared_paths import SHARED_DIR as SHARED

LIBRIVOX = SHARED / "audio" / "fixtures" / "speech-librivox-with-transcripts"
needs_audio = pytest.mark.skipif(not LIBRIVOX.is_dir(), reason=f"{LIBRIVOX} not present")


# ---------------------------------------------------------------- text normalisation

@pytest.mark.parametrize("raw, expected", [
    ("Mr. Dashwood's house!", "mister dashwoods house"),
    ("<s> he was [noise] NOT </s>", "he was not"),
    ("In 1905, 21st & 3.5%", "in one thousand nine hundred five twenty first and three point five percent"),
    ("Café—naïve co-operate", "cafe naive co operate"),
    ("1,000,000 people; agent 007", "one million people agent zero zero seven"),
    ("He didn\u2019t go", "he didnt go"),
    ("   ", ""),
])
def test_normalize_transcript(raw, expected):
    assert normalize_transcript(raw) == expected


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(115) == "one hundred fifteen"
    assert number_to_words(2_000_019) == "two million nineteen"
    assert ordinal_to_words(12) == "twelfth" and ordinal_to_words(40) == "fortieth"
    assert ordinal_to_words(103) == "one hundred third"


def test_normalisation_is_idempotent_and_symmetric():
    text = "Had he married a more amiable woman, Mr. John's 2nd wife..."
    once = normalize_transcript(text)
    assert normalize_transcript(once) == once
    # same words typed differently normalise to the same string
    assert normalize_transcript("MR JOHNS SECOND WIFE") == normalize_transcript("Mr. John's 2nd wife")


# ---------------------------------------------------------------- backends

def _echo_backend(text: str):
    """A perfect 'recogniser' for tests: returns the text it was built with."""
    from bench.metrics.asr import AsrBackend

    class Echo(AsrBackend):
        name = "echo"

        def transcribe(self, wav):
            return text

    return Echo()


def test_perfect_asr_gives_zero_and_errors_count():
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1)
    item = [Item(id="u1", path="u1.wav", domain="speech", transcript="Mr. Smith paid 5 dollars.")]
    (v,) = get_metric("wer").fn(x, x, sample_rate_hz=16000, items=item,
                                asr=_echo_backend("mister smith paid five dollars"))
    assert v.value == 0.0 and v.error is None and v.extra["errors"] == 0 and v.extra["ref_len"] == 5
    (v,) = get_metric("wer").fn(x, x, sample_rate_hz=16000, items=item, asr=_echo_backend("mister smith paid"))
    assert v.value == pytest.approx(2 / 5) and v.extra["deletions"] == 2
    (c,) = get_metric("cer").fn(x, x, sample_rate_hz=16000, items=item, asr=_echo_backend("mister smith paid"))
    ref = "mister smith paid five dollars"
    assert c.value == pytest.approx((len(ref) - len("mister smith paid")) / len(ref))  # spaces count


def test_backend_selection_and_errors(tmp_path, monkeypatch):
    from bench.metrics.asr import AsrError, PocketSphinxBackend, get_asr_backend, register_asr_backend

    monkeypatch.delenv("BENCH_ASR_BACKEND", raising=False)
    assert isinstance(get_asr_backend(), PocketSphinxBackend)
    assert get_asr_backend("pocketsphinx") is get_asr_backend(None)  # cached per process
    with pytest.raises(AsrError, match="pocketsphinx"):
        get_asr_backend("pocketsphynx")
    register_asr_backend("echo-test", lambda arg: _echo_backend(arg))
    monkeypatch.setenv("BENCH_ASR_BACKEND", "echo-test:hello there")
    assert get_asr_backend().transcribe(np.zeros(10)) == "hello there"

    whisper = get_asr_backend(f"whisper:{tmp_path / 'missing'}")
    with pytest.raises(AsrError, match="not found"):
        whisper.transcribe(np.zeros(16000, np.float32))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(AsrError, match="safetensors"):
        get_asr_backend(f"whisper:{tmp_path / 'w'}").transcribe(np.zeros(16000, np.float32))
    (tmp_path / "w" / "model.safetensors").write_bytes(b"")
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(AsrError, match="pip install transformers"):
            get_asr_backend(f"whisper:{tmp_path / 'w'}").transcribe(np.zeros(16000, np.float32))


def test_unscorable_items_nan_with_reason():
    spec = get_metric("wer")
    assert spec.needs_transcript and not spec.higher_is_better and spec.sample_rate_hz == 16000
    assert spec.domains == ("speech",) and spec.unit == "fraction"
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((4, 16000)).astype(np.float32) * 0.1)
    x[2] = 0.0
    items = [Item(id="none", path="a", domain="speech", transcript=None),
             Item(id="punct", path="b", domain="speech", transcript=" ... !"),
             Item(id="silent", path="c", domain="speech", transcript="hello world"),
             Item(id="ok", path="d", domain="speech", transcript="hello world")]
    vals = compute(spec, x, x, items=items, asr=_echo_backend("hello world"))
    assert "no transcript" in vals[0].error and "empty after normalisation" in vals[1].error
    assert "silent" in vals[2].error and vals[3].value == 0.0
    assert all(np.isnan(v.value) for v in vals[:3])
    short = compute(spec, x[:, :800], x[:, :800], items=items, asr=_echo_backend("hello world"))
    assert "shorter" in short[3].error and np.isnan(short[3].value)
    # no items and no transcripts: the whole batch fails with a reason
    assert all("transcript" in v.error for v in compute(spec, x, x))


# ---------------------------------------------------------------- real speech, PocketSphinx

def _librivox() -> tuple[torch.Tensor, list[Item], list[int]]:
    from bench.audio import load_audio, to_channels

    wavs, items = [], []
    for wav in sorted(LIBRIVOX.glob("*.wav")):
        audio = load_audio(wav)
        assert audio.sample_rate_hz == 16000
        wavs.append(to_channels(audio.samples, 1)[0])
        items.append(Item(id=wav.stem, path=str(wav), domain="speech",
                          transcript=wav.with_suffix(".txt").read_text()))
    lengths = [len(w) for w in wavs]
    batch = np.zeros((len(wavs), max(lengths)), np.float32)
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    return torch.from_numpy(batch), items, lengths


@needs_audio
def test_pocketsphinx_wer_clean_vs_heavy_noise():
    """WER of the clean LibriVox clips against their transcripts, and the same clips at 0 dB SNR."""
    clean, items, lengths = _librivox()
    # score each clip at its own length (no batch padding), as the runner does per item
    clean_wer = [compute(get_metric("wer"), clean[i:i + 1, :n], clean[i:i + 1, :n], items=[it])[0]
                 for i, (it, n) in enumerate(zip(items, lengths))]
    assert all(v.ok for v in clean_wer), [v.error for v in clean_wer]
    rng = np.random.default_rng(0)
    noisy_wer = []
    shortest = sorted(range(len(items)), key=lengths.__getitem__)[:3]  # noisy decoding is slow: 3 clips
    for i in shortest:
        it, n = items[i], lengths[i]
        x = clean[i, :n].numpy()
        noise = rng.standard_normal(n).astype(np.float32) * np.sqrt(np.mean(x ** 2))  # 0 dB SNR
        y = torch.from_numpy(np.clip(x + noise, -1, 1))[None]
        noisy_wer.append(compute(get_metric("wer"), y, y, items=[it])[0])
    c = np.array([v.value for v in clean_wer])
    z = np.array([v.value for v in noisy_wer])

    def corpus(values):
        return sum(v.extra["errors"] for v in values) / sum(v.extra["ref_len"] for v in values)

    corpus_clean, corpus_noisy = corpus(clean_wer), corpus(noisy_wer)
    corpus_clean_same = corpus([clean_wer[i] for i in shortest])
    print(f"\nPocketSphinx WER clean per item {np.round(c, 3).tolist()} mean {c.mean():.3f} corpus {corpus_clean:.3f}")
    print(f"PocketSphinx WER 0 dB white noise, 3 shortest items {np.round(z, 3).tolist()} corpus "
          f"{corpus_noisy:.3f} (clean on the same items {corpus_clean_same:.3f})")
    assert 0.0 < corpus_clean < 0.5  # a weak but working recogniser on clean read speech
    assert corpus_noisy > corpus_clean_same + 0.2
    assert all(z > c[shortest])
    # cer reuses the cached hypotheses: same transcripts, no second decode
    cer = compute(get_metric("cer"), clean[:1, : lengths[0]], clean[:1, : lengths[0]], items=items[:1])[0]
    assert cer.ok and cer.extra["hypothesis"] == clean_wer[0].extra["hypothesis"]
    assert 0.0 < cer.value < clean_wer[0].value
