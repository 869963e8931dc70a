"""spk_sim: cosine of speaker embeddings, on random-init WavLMForXVector models saved into tmp folders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.datasets.base import Item
from bench.metrics.base import compute, get_metric, metric_fingerprint

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000


def save_model(folder, seed: int = 0, *, normalize: bool = True, pickle: bool = False):
    """A small random-init WavLMForXVector + feature extractor in ``folder`` (safetensors, or a .bin release)."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(seed)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                         num_buckets=16, max_bucket_distance=64, tdnn_dim=(16, 16, 16, 16, 32),
                         xvector_output_dim=16, use_weighted_layer_sum=True, num_labels=4,
                         initializer_range=0.2)  # HF's 0.02 gives embeddings ~1e-8, all near one direction
    model = WavLMForXVector(config).eval()
    with torch.no_grad():  # non-uniform layer weights, so the weighted sum of hidden states is exercised
        model.layer_weights.copy_(torch.randn(config.num_hidden_layers + 1))
    folder.mkdir(parents=True, exist_ok=True)
    if pickle:
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=normalize,
                             return_attention_mask=True).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spk") / "wavlm-tiny"
    save_model(folder)
    return folder


@pytest.fixture
def spk(model_dir, monkeypatch):
    from bench.metrics import spk_sim

    monkeypatch.setenv("BENCH_SPK_MODEL", str(model_dir))
    spk_sim.clear_cache()
    return spk_sim


def voices(n: int, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """``n`` different harmonic 'voices' (f0 100-250 Hz, random harmonic weights, a little noise), [n, T]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = []
    for _ in range(n):
        f0 = rng.uniform(100, 250)
        wav = sum(rng.uniform(0.1, 1) / k * np.sin(2 * np.pi * k * f0 * t * (1 + 0.02 * np.sin(3 * t)))
                  for k in range(1, 12))
        wav = wav + 0.01 * rng.standard_normal(t.size)
        out.append(0.3 * wav / np.max(np.abs(wav)))
    return np.stack(out).astype(np.float32)


def test_spec():
    spec = get_metric("spk_sim")
    assert spec.higher_is_better and spec.needs_reference and spec.unit == "cosine"
    assert spec.sample_rate_hz == RATE and spec.valid_range == (-1.0, 1.0) and spec.domains == ("speech",)
    assert spec.model_info is not None and "WavLM" in spec.display_name and not spec.default


def test_cosine_definition_on_hand_made_embeddings():
    from bench.metrics.spk_sim import cosine

    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, -4.0], [2.0, 5.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [5.0, 0.0], [-6.0, 8.0], [4.0, 10.0], [1.0, 1.0]])
    got = cosine(a, b)
    assert got[:4] == pytest.approx([0.0, 1 / math.sqrt(2), -1.0, 1.0], abs=1e-12)
    assert math.isnan(got[4])  # a zero embedding has no direction
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 512)), rng.standard_normal((3, 512))
    expected = [float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)) for u, v in zip(x, y)]
    assert cosine(x, y) == pytest.approx(expected, abs=1e-12)
    assert cosine(7.0 * x, 0.1 * y) == pytest.approx(expected, abs=1e-12)  # scale does not matter
    assert cosine(x, x) == pytest.approx([1.0] * 3, abs=1e-12)


def test_identical_is_one_and_matches_model_card_recipe(spk, model_dir):
    """End to end: ref == pred gives 1; other pairs equal the HF recipe (feature extractor, model, cosine)."""
    from transformers import AutoFeatureExtractor, WavLMForXVector

    ref = voices(3, seconds=1.2)
    noisy = ref + 0.05 * np.random.default_rng(1).standard_normal(ref.shape).astype(np.float32)
    preds = np.stack([ref[0], noisy[1], ref[0]])  # third: another 'speaker' against ref[2]
    values = compute(get_metric("spk_sim"), torch.from_numpy(preds), torch.from_numpy(ref), sample_rate_hz=RATE)
    assert [v.error for v in values] == [None] * 3
    assert values[0].value == pytest.approx(1.0, abs=1e-6)
    fe = AutoFeatureExtractor.from_pretrained(model_dir)
    model = WavLMForXVector.from_pretrained(model_dir).eval()
    with torch.no_grad():
        e_ref = model(**fe(list(ref), sampling_rate=RATE, return_tensors="pt")).embeddings
        e_deg = model(**fe(list(preds), sampling_rate=RATE, return_tensors="pt")).embeddings
    expected = torch.nn.functional.cosine_similarity(e_ref, e_deg, dim=-1).tolist()
    assert [v.value for v in values] == pytest.approx(expected, abs=1e-5)
    assert all(-1.0 <= v.value <= 1.0 for v in values) and values[2].value < 0.999
    assert all(v.compute_s is not None and v.compute_s > 0 for v in values)


def test_batched_equals_one_by_one(spk):
    model = spk.load_model("cpu")
    clips = voices(4, seconds=0.8, seed=3)
    together = spk.speaker_embeddings(clips, model)
    alone = np.concatenate([spk.speaker_embeddings(c[None], model) for c in clips])
    two_by_two = spk.speaker_embeddings(clips, model, max_batch_samples=2 * clips.shape[1])
    scale = np.abs(alone).max()
    assert together.shape == (4, 16) and scale > 1e-2
    np.testing.assert_allclose(together, alone, atol=1e-4 * scale, rtol=0)
    np.testing.assert_allclose(two_by_two, alone, atol=1e-4 * scale, rtol=0)
    assert np.abs(together[0] - together[1]).max() > 1e-2 * scale  # different clips, different embeddings
    # the metric: batched call == one call per item
    ref = torch.from_numpy(clips[[1, 0, 3, 2]].copy())
    spk.clear_cache()
    batched = [v.value for v in spk.spk_sim(torch.from_numpy(clips), ref, sample_rate_hz=RATE)]
    spk.clear_cache()
    single = [spk.spk_sim(torch.from_numpy(clips[i:i + 1]), ref[i:i + 1], sample_rate_hz=RATE)[0].value
              for i in range(4)]
    assert batched == pytest.approx(single, abs=1e-4) and max(batched) < 1.0 - 1e-3


def test_reference_embedded_once(spk, monkeypatch):
    """One reference scored against many reconstructions, over several calls: the reference is embedded once."""
    embedded: list[int] = []
    inner = spk.speaker_embeddings

    def counting(wavs, model, **kw):
        embedded.append(len(wavs))
        return inner(wavs, model, **kw)

    monkeypatch.setattr(spk, "speaker_embeddings", counting)
    ref = voices(1, seconds=0.6, seed=5)
    degs = ref + 0.02 * np.random.default_rng(2).standard_normal((4, ref.shape[1])).astype(np.float32)
    target = torch.from_numpy(np.repeat(ref, 2, axis=0))
    first = spk.spk_sim(torch.from_numpy(degs[:2]), target, sample_rate_hz=RATE)
    second = spk.spk_sim(torch.from_numpy(degs[2:]), target, sample_rate_hz=RATE)
    assert embedded == [1, 2, 2]  # the reference once, then two new reconstructions per call
    assert all(v.ok for v in first + second)


def test_unscorable_items_nan_with_reason(spk):
    clips = voices(2, seconds=0.7, seed=7)
    ref = np.stack([clips[0], clips[1], clips[0], np.zeros_like(clips[0])])
    preds = np.stack([clips[0], np.zeros_like(clips[1]), np.full_like(clips[0], np.nan), clips[0]])
    items = [Item(id=f"u{i}", path="x.wav", domain="speech") for i in range(4)]
    values = spk.spk_sim(torch.from_numpy(preds), torch.from_numpy(ref), sample_rate_hz=RATE, items=items)
    assert values[0].ok and values[0].value == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(values[1].value) and "u1" in values[1].error and "reconstruction is silent" in values[1].error
    assert math.isnan(values[2].value) and "NaN" in values[2].error
    assert math.isnan(values[3].value) and "reference is silent" in values[3].error
    short = torch.from_numpy(clips[:, : int(0.3 * RATE)].copy())
    (v, _) = spk.spk_sim(short, short, sample_rate_hz=RATE)
    assert math.isnan(v.value) and "shorter" in v.error and "0.5" in v.error
    with pytest.raises(Exception, match="16000"):
        spk.spk_sim(short, short, sample_rate_hz=48000)


def test_missing_weights_nan_with_fix(tmp_path, monkeypatch):
    from bench.metrics import spk_sim

    monkeypatch.setenv("BENCH_SPK_MODEL", str(tmp_path))  # an empty folder
    x = torch.from_numpy(voices(2, seconds=0.6))
    values = compute(get_metric("spk_sim"), x, x, sample_rate_hz=RATE)
    for v in values:
        assert math.isnan(v.value)
        assert "bench weights fetch microsoft/wavlm-base-plus-sv" in v.error and "BENCH_SPK_MODEL" in v.error
    info = get_metric("spk_sim").model_info()
    assert "error" in info and info["model"] == str(tmp_path)
    assert spk_sim.DEFAULT_MODEL == "microsoft/wavlm-base-plus-sv"


def test_not_applicable_to_music_and_scored_through_the_pipeline(spk):
    from bench.pipeline.scoring import score_pair

    spec = get_metric("spk_sim")
    ok, why = spec.applies_to("music")
    assert not ok and "speech" in why
    wav = voices(1, seconds=1.0, seed=9)[0]
    music = score_pair(wav, wav, RATE, [spec], item=Item(id="m", path="m.wav", domain="music"))
    assert "spk_sim" in music.skipped and "spk_sim" not in music.values
    # at 24 kHz: the harness resamples to 16 kHz and the metric gets [1, T]
    t = np.arange(24000) / 24000
    wav24 = (0.3 * np.sin(2 * np.pi * 140 * t) + 0.1 * np.sin(2 * np.pi * 420 * t)).astype(np.float32)
    speech = score_pair(wav24, wav24, 24000, [spec], item=Item(id="s", path="s.wav", domain="speech"))
    assert speech.values["spk_sim"].value == pytest.approx(1.0, abs=1e-6)


def test_fingerprint_follows_the_weights(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    save_model(folder, seed=0)
    monkeypatch.setenv("BENCH_SPK_MODEL", str(folder))
    spec = get_metric("spk_sim")
    before = metric_fingerprint(spec)
    assert metric_fingerprint(spec) == before
    sha_before = spec.model_info()["weights_sha256"]
    save_model(folder, seed=1)  # other weights in the same folder
    assert spec.model_info()["weights_sha256"] != sha_before
    assert metric_fingerprint(spec) != before


def test_convert_release_from_pickle(tmp_path, monkeypatch):
    """A pytorch_model.bin release converts to safetensors and scores as the original network embeds."""
    from bench.errors import UserError
    from bench.metrics import spk_sim

    original = save_model(tmp_path / "release", seed=2, pickle=True)
    monkeypatch.setenv("BENCH_SPK_MODEL", str(tmp_path / "release"))
    assert "error" in get_metric("spk_sim").model_info()  # a pickle alone is never loaded
    out = spk_sim.convert_release(tmp_path / "release", tmp_path / "converted")
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    monkeypatch.setenv("BENCH_SPK_MODEL", str(out))
    clips = voices(2, seconds=0.6, seed=11)
    ours = spk_sim.speaker_embeddings(clips, spk_sim.load_model("cpu"))
    normed = (clips - clips.mean(1, keepdims=True)) / np.sqrt(clips.var(1, keepdims=True) + 1e-7)
    with torch.no_grad():
        expected = original(input_values=torch.from_numpy(normed)).embeddings.double().numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="pytorch_model.bin"):
        spk_sim.convert_release(tmp_path / "converted", tmp_path / "again")
