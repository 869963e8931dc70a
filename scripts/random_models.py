#!/usr/bin/env python
"""Random-init stand-ins, of the published sizes, for the weights of bench's model-backed metrics.

Each ``save_*`` function builds a model from a config with the published checkpoint's shape, initialises it
at random (seeded), and writes it with ``save_pretrained`` (``config.json`` + ``model.safetensors``) into a
folder together with the feature extractor / tokenizer files the metric loads, all offline:

========================  ==================================  =============================================
env var                   stands in for                       shape
========================  ==================================  =============================================
BENCH_SPK_MODEL           microsoft/wavlm-base-plus-sv        WavLMForXVector, WavLM Base+: 12 layers, hidden
                                                              768, weighted layer sum, TDNN 512x4 + 1500
BENCH_WHISPER_MODEL       openai/whisper-small                d_model 768, 12 + 12 layers, 80 mel bins,
                                                              51865-token vocabulary
BENCH_HUBERT_MODEL        facebook/hubert-large-ls960-ft      HubertForCTC: 24 layers, hidden 1024, the
                                                              7-layer conv front end, 32-letter CTC vocab
BENCH_FAD_ENCODEC_MODEL   facebook/encodec_24khz              EncodecConfig() defaults (the 24 kHz model)
BENCH_FAD_CLAP_MODEL      laion/clap-htsat-unfused            ClapConfig() defaults (HTSAT audio tower)
========================  ==================================  =============================================

The weights are random: scores computed with them (WER, similarities, FAD) mean nothing, but every layer,
matrix and sequence length is that of the real model, so the compute is representative. That is what
``scripts/bench_metrics.py --random-models DIR`` uses them for.

Whisper's tokenizer is a byte-level BPE vocabulary without merges: the 256 byte symbols, filler pieces
("Ġab", "abc", ...) up to id 50256, then Whisper's special tokens at their multilingual ids
(``<|endoftext|>`` 50257, ``<|startoftranscript|>`` 50258, 99 language tokens, task tokens,
``<|notimestamps|>`` 50363, 1501 timestamp tokens): 51865 ids, so ``generate``'s output projection has the
real width and decoding yields text. A random decoder practically never picks ``<|endoftext|>``, so
``generate`` runs to its ``max_new_tokens`` cap.

Usage: python scripts/random_models.py DIR   (builds what is missing, prints {env var: folder})
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

SAMPLE_RATE_HZ = 16000
#: written last into each folder: a folder without it is an unfinished build and is rebuilt
MARKER = "random_init.json"
#: bump when a builder changes, so folders of an older layout are rebuilt
LAYOUT_VERSION = 1
WHISPER_VOCAB_SIZE = 51865
WHISPER_TEXT_VOCAB = 50257  # ids 0..50256: text pieces; 50257 is <|endoftext|>
WHISPER_LANGUAGES = 99  # whisper-small's language tokens (v3 adds "yue")
CTC_LETTERS = "ETAOINHSRDLUMWCFGYPBVK'XJQZ"  # the order of facebook/hubert-large-ls960-ft's vocab.json


def _n_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------ speaker model

def save_wavlm_sv(folder: Path, seed: int = 0) -> int:
    """WavLMForXVector shaped as microsoft/wavlm-base-plus-sv + its feature extractor; returns the parameter count."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(seed)
    config = WavLMConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        feat_extract_norm="group", conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False, num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16, num_buckets=320, max_bucket_distance=800, do_stable_layer_norm=False,
        tdnn_dim=(512, 512, 512, 512, 1500), tdnn_kernel=(5, 3, 3, 1, 1), tdnn_dilation=(1, 2, 3, 1, 1),
        xvector_output_dim=512, use_weighted_layer_sum=True,
        # at full size HF's 0.02 gives x-vectors of norm ~0.2 whose cosines between a tone, harmonic voices and
        # noise are 0.95-0.97, not degenerate (the tiny test models need 0.2); 0.1 and above blow the norms up
        # to 1e4-1e6 without spreading the directions more (measured; the __main__ self-check prints them)
        initializer_range=0.02)
    model = WavLMForXVector(config).eval()
    with torch.no_grad():  # a non-uniform weighted sum of the 13 hidden states, as a trained model has
        model.layer_weights.copy_(torch.randn(config.num_hidden_layers + 1))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE_HZ, padding_value=0.0, do_normalize=False,
                             return_attention_mask=True).save_pretrained(folder)
    return _n_params(model)


# ------------------------------------------------------------------ Whisper

def _byte_symbols() -> list[str]:
    """The 256 byte-level BPE symbols (byte b -> one printable character), in byte order."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, shifted = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:  # control and space bytes map to U+0100 upwards (space -> "Ġ")
            out.append(chr(256 + shifted))
            shifted += 1
    return out


def whisper_text_vocab() -> dict[str, int]:
    """50257 text pieces: the byte symbols, then lower-case letter pieces with and without a leading space."""
    vocab = {s: i for i, s in enumerate(_byte_symbols())}
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = ("\u0120" * lead + "".join(p) for n in range(1, 5) for p in itertools.product(letters, repeat=n)
              for lead in (1, 0))
    for piece in pieces:
        if len(vocab) == WHISPER_TEXT_VOCAB:
            break
        vocab.setdefault(piece, len(vocab))
    return vocab


def whisper_language_tokens() -> list[str]:
    """whisper-small's 99 language tokens (``<|en|>`` first), in id order."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [f"<|{code}|>" for code in list(LANGUAGES)[:WHISPER_LANGUAGES]]


def whisper_special_tokens() -> list[str]:
    """Whisper's multilingual special tokens after <|endoftext|>, in id order (50258 .. 51864)."""
    timestamps = [f"<|{0.02 * k:.2f}|>" for k in range(1501)]
    return (["<|startoftranscript|>", *whisper_language_tokens(), "<|translate|>", "<|transcribe|>", "<|startoflm|>",
             "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>", *timestamps])


def _whisper_tokenizer() -> Any:
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer(vocab=whisper_text_vocab(), merges=[], unk_token="<|endoftext|>",
                                 bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": whisper_special_tokens()})
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")]
    if ids != [50257, 50258, 50363] or len(tokenizer) != WHISPER_VOCAB_SIZE:
        raise RuntimeError(f"Whisper vocabulary laid out wrongly: eot/sot/notimestamps {ids}, size {len(tokenizer)}")
    return tokenizer


def _whisper_generation_config(tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ["<|endoftext|>", *whisper_special_tokens()]}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    return GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=448,
        is_multilingual=True, lang_to_id={t: ids[t] for t in whisper_language_tokens()},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        begin_suppress_tokens=[tokenizer.convert_tokens_to_ids("\u0120"), eot],
        suppress_tokens=[i for t, i in ids.items() if i != eot])  # text and <|endoftext|> only: transcripts are text


def save_whisper_small(folder: Path, seed: int = 0) -> int:
    """WhisperForConditionalGeneration shaped as openai/whisper-small + processor files; returns the parameter count."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    tokenizer = _whisper_tokenizer()
    eot, sot = 50257, 50258
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=WHISPER_VOCAB_SIZE, num_mel_bins=80, d_model=768, encoder_layers=12, decoder_layers=12,
        encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        max_source_positions=1500, max_target_positions=448, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = _whisper_generation_config(tokenizer)
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return _n_params(model)


# ------------------------------------------------------------------ HuBERT CTC

def save_hubert_large_ctc(folder: Path, seed: int = 0) -> int:
    """HubertForCTC shaped as facebook/hubert-large-ls960-ft + Wav2Vec2Processor; returns the parameter count."""
    import torch
    from transformers import (
        HubertConfig,
        HubertForCTC,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c: 5 + k for k, c in enumerate(CTC_LETTERS)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE_HZ, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    torch.manual_seed(seed)
    config = HubertConfig(
        vocab_size=len(vocab), hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=True, num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16, do_stable_layer_norm=True, pad_token_id=0)
    model = HubertForCTC(config).eval()
    model.save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return _n_params(model)


# ------------------------------------------------------------------ FAD embedders

def save_encodec_24khz(folder: Path, seed: int = 0) -> int:
    """EncodecModel with EncodecConfig() defaults (facebook/encodec_24khz's shape); returns the parameter count."""
    import torch
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    model = EncodecModel(EncodecConfig()).eval()
    model.save_pretrained(folder)
    return _n_params(model)


def save_clap(folder: Path, seed: int = 0) -> int:
    """ClapModel, ClapConfig() defaults (laion/clap-htsat-unfused's shape), + extractor; returns the parameter count."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(seed)
    model = ClapModel(ClapConfig()).eval()
    model.save_pretrained(folder)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(folder)
    return _n_params(model)


# ------------------------------------------------------------------ all of them

#: env var -> (folder name, published model it stands in for, builder)
BUILDERS: dict[str, tuple[str, str, Callable[[Path, int], int]]] = {
    "BENCH_SPK_MODEL": ("wavlm-base-plus-sv", "microsoft/wavlm-base-plus-sv", save_wavlm_sv),
    "BENCH_WHISPER_MODEL": ("whisper-small", "openai/whisper-small", save_whisper_small),
    "BENCH_HUBERT_MODEL": ("hubert-large-ls960-ft", "facebook/hubert-large-ls960-ft", save_hubert_large_ctc),
    "BENCH_FAD_ENCODEC_MODEL": ("encodec_24khz", "facebook/encodec_24khz", save_encodec_24khz),
    "BENCH_FAD_CLAP_MODEL": ("clap-htsat-unfused", "laion/clap-htsat-unfused", save_clap),
}


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The build record of a finished folder of this layout, else None."""
    try:
        info: dict[str, Any] = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("layout_version") == LAYOUT_VERSION else None


def ensure_model(root: Path, env_var: str, seed: int = 0, log: Callable[[str], None] = print) -> Path:
    """The folder of ``env_var``'s random model under ``root``, built now unless a finished one is there."""
    name, stands_for, build = BUILDERS[env_var]
    folder = Path(root) / name
    if read_marker(folder) is None:
        log(f"building random-init {stands_for} in {folder} ...")
        t0 = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        n_params = build(folder, seed)
        record = {"layout_version": LAYOUT_VERSION, "stands_for": stands_for, "env_var": env_var, "seed": seed,
                  "n_params": n_params, "random_init": True, "build_s": round(time.perf_counter() - t0, 1)}
        (folder / MARKER).write_text(json.dumps(record, indent=1))
    return folder


def random_model_dirs(root: str | Path, env_vars: list[str] | None = None, seed: int = 0,
                      log: Callable[[str], None] = print) -> dict[str, Path]:
    """{env var: folder} of the random-init models under ``root`` (all, or ``env_vars``), building the missing ones."""
    return {env: ensure_model(Path(root), env, seed, log) for env in (env_vars or list(BUILDERS))}


def _self_check(dirs: dict[str, Path]) -> None:
    """Speaker embeddings of two different signals must differ (the initializer_range choice)."""
    import os

    import numpy as np

    os.environ["BENCH_SPK_MODEL"] = str(dirs["BENCH_SPK_MODEL"])
    from bench.metrics import spk_sim

    t = np.arange(2 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    a = 0.1 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    b = 0.1 * np.random.default_rng(0).standard_normal(t.size)
    emb = spk_sim.speaker_embeddings(np.stack([a, b]).astype(np.float32), spk_sim.load_model())
    print(f"spk_sim self-check: |e| = {np.linalg.norm(emb, axis=1)}, cosine(tone, noise) = "
          f"{float(spk_sim.cosine(emb[:1], emb[1:])[0]):.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.rsplit("Usage: ", 1)[1])
    built = random_model_dirs(sys.argv[1])
    for env, path in built.items():
        print(f"{env}={path}  ({read_marker(path)})")
    _self_check(built)
