"""wer_whisper / cer_whisper / wer_hubert / cer_hubert on random-init models saved with save_pretrained.

Nothing is downloaded: a tiny Whisper (d_model 64, 2+2 layers, a 40-token byte-level BPE vocabulary with
Whisper's special tokens) and a tiny HuBERT-CTC (hidden 32, 2 layers, a 17-letter CTC vocabulary) are
built from configs, saved as safetensors with their tokenizer and feature extractor, and found through
BENCH_WHISPER_MODEL / BENCH_HUBERT_MODEL. Their transcripts are gibberish, but real: the tests check that
the metric scores the model's own transcript the way jiwer does, that a batch gives what one-by-one calls
give, and that the weights and settings are in the fingerprint.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("whisper_normalizer")

from bench.datasets.base import Item  # noqa: E402
from bench.metrics import wer as wer_module  # noqa: E402
from bench.metrics.base import compute, get_metric, metric_fingerprint  # noqa: E402
from bench.metrics.text_norm import normalize_whisper  # noqa: E402

RATE = 16000
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
            "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def _save_tiny_whisper(folder, seed: int) -> None:
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab = {c: i for i, c in enumerate(["\u0120"] + list(LETTERS))}  # \u0120 is byte-level BPE's space
    for word in ("the", "cat", "sat", "on", "mat", "colour"):
        vocab["\u0120" + word] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    torch.manual_seed(seed)
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448, init_std=0.5,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=448,
        is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], begin_suppress_tokens=[],
        suppress_tokens=[ids[s] for s in SPECIALS[1:]])  # letters and words only: transcripts are not empty
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)


def _save_tiny_hubert(folder, seed: int) -> None:
    from transformers import (
        HubertConfig,
        HubertForCTC,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for c in "ETAOINSHRDLUCMW'":
        vocab[c] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=True)
    torch.manual_seed(seed)
    config = HubertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                          do_stable_layer_norm=True, pad_token_id=0, initializer_range=0.5)
    HubertForCTC(config).eval().save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr_models")
    folders = {"whisper": root / "whisper", "whisper2": root / "whisper2", "hubert": root / "hubert"}
    _save_tiny_whisper(folders["whisper"], seed=0)
    _save_tiny_whisper(folders["whisper2"], seed=1)
    _save_tiny_hubert(folders["hubert"], seed=0)
    return folders


@pytest.fixture
def env(models, monkeypatch):
    monkeypatch.setenv("BENCH_WHISPER_MODEL", str(models["whisper"]))
    monkeypatch.setenv("BENCH_HUBERT_MODEL", str(models["hubert"]))
    wer_module._HYP_CACHE.clear()
    torch.set_num_threads(1)
    return models


def _clips(n: int, seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    rows = [0.1 * np.sin(2 * np.pi * (150 + 60 * k) * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.02 * rng.standard_normal(len(t)) for k in range(n)]
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def _items(n: int, transcript: str | None = "The colour of the cat, twenty five mats.") -> list[Item]:
    return [Item(id=f"u{k}", path=f"u{k}.wav", domain="speech", transcript=transcript) for k in range(n)]


def _decode_alone(kind: str, folder, wav: np.ndarray) -> str:
    """The model's transcript of one clip of at most one window, decoded by hand (no bench code)."""
    if kind == "whisper":
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        processor = WhisperProcessor.from_pretrained(folder)
        model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
        feats = processor.feature_extractor(wav, sampling_rate=RATE, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(feats, language="en", task="transcribe", num_beams=1, max_new_tokens=224)
        return processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()
    from transformers import HubertForCTC, Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(folder)
    model = HubertForCTC.from_pretrained(folder).eval()
    with torch.inference_mode():
        logits = model(processor.feature_extractor(wav, sampling_rate=RATE, return_tensors="pt").input_values).logits
    return processor.tokenizer.batch_decode(logits.argmax(-1), skip_special_tokens=True)[0].strip()


# ---------------------------------------------------------------- specs

def test_specs_name_their_recogniser():
    assert "PocketSphinx" in get_metric("wer").display_name and "offline fallback" in get_metric("wer").display_name
    for name, label in (("wer_whisper", "WER (Whisper"), ("cer_whisper", "CER (Whisper"),
                        ("wer_hubert", "WER (HuBERT"), ("cer_hubert", "CER (HuBERT")):
        spec = get_metric(name)
        assert spec.display_name.startswith(label) and spec.model_info is not None
        assert spec.unit == "fraction" and not spec.higher_is_better and spec.needs_transcript
        assert spec.sample_rate_hz == RATE and spec.domains == ("speech",) and not spec.default


# ---------------------------------------------------------------- end to end

@pytest.mark.parametrize("kind", ["whisper", "hubert"])
def test_scores_the_models_transcript_as_jiwer_does(env, kind):
    import jiwer

    x = _clips(2, 1.5)
    items = _items(2)
    wer_vals = compute(get_metric(f"wer_{kind}"), x, x, items=items)
    cer_vals = compute(get_metric(f"cer_{kind}"), x, x, items=items)
    ref = normalize_whisper(items[0].transcript)
    assert ref == "the color of the cat 25 mats"
    for i, (w, c) in enumerate(zip(wer_vals, cer_vals)):
        assert w.ok and c.ok, (w.error, c.error)
        assert 0.0 <= w.value < math.inf and 0.0 <= c.value < math.inf
        hyp_raw = w.extra["hypothesis_raw"]
        assert hyp_raw == _decode_alone(kind, env[kind], x[i].numpy())
        assert c.extra["hypothesis_raw"] == hyp_raw  # cer reused the transcription
        hyp = normalize_whisper(hyp_raw)
        assert w.extra["hypothesis"] == hyp and w.extra["reference"] == ref
        assert w.value == pytest.approx(jiwer.wer(ref, hyp), abs=1e-12)
        assert c.value == pytest.approx(jiwer.cer(ref, hyp), abs=1e-12)
        assert w.extra["normaliser"] == "whisper-english" and kind in w.extra["asr"]
    # the model's own transcript as the reference scores 0
    own = wer_vals[0].extra["hypothesis_raw"]
    assert normalize_whisper(own), own
    again = compute(get_metric(f"wer_{kind}"), x[:1], x[:1], transcripts=[own])[0]
    assert again.value == 0.0 and again.extra["errors"] == 0


@pytest.mark.parametrize("kind, seconds", [("whisper", 1.0), ("whisper", 31.0), ("hubert", 1.0), ("hubert", 61.0)])
def test_batched_equals_one_by_one(env, monkeypatch, kind, seconds):
    """B clips in one call: one model call for all their windows, the transcripts of B calls of one clip."""
    from bench.metrics import asr

    method = "_generate" if kind == "whisper" else "_forward"
    calls = []
    original = getattr(getattr(asr, "WhisperBackend" if kind == "whisper" else "HubertBackend"), method)

    def counting(self, model, processor, chunk):
        calls.append(len(chunk))
        return original(self, model, processor, chunk)

    monkeypatch.setattr(asr.WhisperBackend if kind == "whisper" else asr.HubertBackend, method, counting)
    n = 3 if seconds < 10 else 2
    x = _clips(n, seconds, seed=3)
    spec = get_metric(f"wer_{kind}")
    batched = compute(spec, x, x, items=_items(n))
    windows_per_clip = 2 if seconds > 30 else 1
    # whisper pads every window to 30 s: one call for all; hubert: one call per window length
    assert calls == ([n * windows_per_clip] if kind == "whisper" else [n] * windows_per_clip)
    wer_module._HYP_CACHE.clear()
    alone = [compute(spec, x[i:i + 1], x[i:i + 1], items=_items(1))[0] for i in range(n)]
    assert [v.extra["hypothesis_raw"] for v in batched] == [v.extra["hypothesis_raw"] for v in alone]
    assert [v.value for v in batched] == [v.value for v in alone]
    if windows_per_clip == 2:
        assert all(v.ok for v in batched)


def test_through_score_pairs_like_pair_by_pair(env):
    """The scoring path: on_device metrics get one [B, T] call per item's reconstructions; same rows as one by one."""
    from bench.pipeline.scoring import score_pair, score_pairs

    specs = [get_metric("wer_hubert"), get_metric("cer_whisper")]
    assert all(s.on_device for s in specs)
    ref = _clips(1, 1.0, seed=5)[0].numpy()
    degs = [ref + 0.01 * np.random.default_rng(k).standard_normal(len(ref)).astype(np.float32) for k in range(2)]
    item = _items(1)[0]
    batched = score_pairs(ref, degs, RATE, specs, item=item, device="cpu", batch_samples=10 ** 9)
    wer_module._HYP_CACHE.clear()
    single = [score_pair(ref, d, RATE, specs, item=item) for d in degs]
    for b, s in zip(batched, single):
        for name in ("wer_hubert", "cer_whisper"):
            assert b.values[name].ok and b.values[name].value == s.values[name].value
            assert b.values[name].extra["hypothesis_raw"] == s.values[name].extra["hypothesis_raw"]


# ---------------------------------------------------------------- provenance

def test_model_info_and_fingerprint_follow_the_weights(env, monkeypatch):
    from bench.hub import weights_sha256

    spec = get_metric("wer_whisper")
    info = spec.model_info()
    assert info["weights_sha256"] == weights_sha256(env["whisper"]) and info["env"] == "BENCH_WHISPER_MODEL"
    assert info["language"] == "en" and info["num_beams"] == 1 and info["max_new_tokens"] == 224
    assert info["normaliser"] == "whisper-english" and "transformers" in info["normaliser_version"]
    assert "whisper-normalizer" in info["normaliser_version"]
    first = metric_fingerprint(spec)
    assert metric_fingerprint(spec) == first
    monkeypatch.setenv("BENCH_WHISPER_MODEL", str(env["whisper2"]))
    assert spec.model_info()["weights_sha256"] != info["weights_sha256"]
    assert metric_fingerprint(spec) != first
    hubert = get_metric("wer_hubert").model_info()
    assert hubert["weights_sha256"] == weights_sha256(env["hubert"]) and hubert["decoding"] == "greedy ctc"
    assert hubert["normaliser"] == "whisper-english"


def test_missing_weights_nan_with_reason(env, monkeypatch, tmp_path):
    x = _clips(2, 1.0)
    monkeypatch.setenv("BENCH_WHISPER_MODEL", str(tmp_path / "nowhere"))
    vals = compute(get_metric("wer_whisper"), x, x, items=_items(2))
    assert all(math.isnan(v.value) for v in vals)
    assert "BENCH_WHISPER_MODEL" in vals[0].error and "bench weights fetch openai/whisper-large-v3" in vals[0].error
    assert "error" in get_metric("wer_whisper").model_info()
    # the default hub id, not in an (empty) local cache
    monkeypatch.delenv("BENCH_HUBERT_MODEL")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    vals = compute(get_metric("cer_hubert"), x, x, items=_items(2))
    assert all(math.isnan(v.value) for v in vals)
    assert "bench weights fetch facebook/hubert-large-ls960-ft" in vals[1].error


def test_unscorable_items_nan_with_reason(env):
    x = _clips(4, 1.0)
    x[1] = 0.0
    items = _items(4)
    items[2] = Item(id="none", path="n.wav", domain="speech", transcript=None)
    items[3] = Item(id="punct", path="p.wav", domain="speech", transcript="!?")
    vals = compute(get_metric("wer_whisper"), x, x, items=items)
    assert vals[0].ok
    assert "silent" in vals[1].error and "no transcript" in vals[2].error and "empty after" in vals[3].error
    assert all(math.isnan(v.value) for v in vals[1:])
    short = compute(get_metric("wer_hubert"), x[:1, :800], x[:1, :800], items=items[:1])[0]
    assert math.isnan(short.value) and "shorter" in short.error
    nodev = compute(get_metric("wer_hubert"), x[:1], x[:1], items=items[:1],
                    device="cuda" if not torch.cuda.is_available() else "nope")[0]
    assert math.isnan(nodev.value) and nodev.error


# ---------------------------------------------------------------- wer (PocketSphinx) cannot silently change

def test_wer_stays_pocketsphinx(monkeypatch, tmp_path):
    x = _clips(1, 1.0)
    spec = get_metric("wer")
    monkeypatch.delenv("BENCH_ASR_BACKEND", raising=False)
    info = spec.model_info()
    assert info["model"].startswith("pocketsphinx") and info["normaliser"] == "bench.text_norm"
    base = metric_fingerprint(spec)
    monkeypatch.setenv("BENCH_ASR_BACKEND", f"whisper:{tmp_path}")
    (v,) = compute(spec, x, x, items=_items(1))
    assert math.isnan(v.value) and "wer_whisper" in v.error
    assert "error" in spec.model_info() and metric_fingerprint(spec) != base
    hmm = tmp_path / "hmm"
    hmm.mkdir()
    monkeypatch.setenv("BENCH_ASR_BACKEND", f"pocketsphinx:{hmm}")  # another acoustic model: another fingerprint
    assert str(hmm) in spec.model_info()["model"] and metric_fingerprint(spec) != base
