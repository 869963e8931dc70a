"""Batched and chunked coding (bench.pipeline.batching): per-item results independent of the batch.

With the shipped DAC, VRVQ and EuleroDec and with a random-init EnCodec (save_pretrained into a
temporary folder): batched == unbatched (identical bitstreams, decodes within 1e-5), an item's result
does not change with its batch-mates, the shared full-depth encode gives the same codes as encoding at
that depth directly (and VRVQ runs its encoder once for all its points), long items coded in windows
match the unchunked coding within the tolerance docs/codecs.md states, a codec without a frame layout
(Opus; Mimi, whose batched codes are not exact, see docs/codecs.md) gives its plain encode/decode, and a
failing item fails only its own pairs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_paths import SHARED_AUDIO

from bench.codecs.base import Codec, Encoded, FrameLayout
from bench.codecs.dac import DACCodec
from bench.codecs.eulerodec import EuleroDecCodec
from bench.codecs.vrvq import VRVQCodec
from bench.pipeline.batching import CodedAudio, code_batch, plan_batches, plan_segments

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIBRISPEECH = SHARED_AUDIO / "train" / "speech" / "librispeech-train-clean-100"
LENGTHS_S = (0.7, 1.3, 2.0, 2.05)  # padded to 1, 2, 2 and 3 s: one bucket of two, two of one
#: chunked vs unchunked coding of a long item, as docs/codecs.md states (measured: DAC and VRVQ identical
#: codes and decodes within float noise; EuleroDec 6k 99.7 % of codes, 40 dB, with 1 s context)
CHUNK_MIN_SAME_CODES = 0.99
CHUNK_MIN_SNR_DB = 30.0
BUDGET = 4_000_000  # samples per batch (the CPU default is one row per batch: batching is slower there)


def _speech(total_s: float, rate: int, seed: int = 0) -> np.ndarray:
    """Mono float32 speech ``[1, T]``: LibriSpeech utterances joined, or speech-like noise and tones without shared."""
    n = int(total_s * rate)
    if LIBRISPEECH.is_dir():
        from bench.audio import load_audio, resample

        parts, have = [], 0
        for path in sorted(LIBRISPEECH.glob("*.flac"))[seed:]:
            audio = load_audio(path)
            parts.append(resample(audio.samples[:1], audio.sample_rate_hz, rate))
            have += parts[-1].shape[-1]
            if have >= n:
                break
        return np.concatenate(parts, axis=-1)[:, :n].astype(np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2  # syllable-rate modulation
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((140, 280, 560, 1200), 1))
    return (0.1 * envelope * (tones + 0.5 * rng.standard_normal(n)))[None].astype(np.float32)


def _items(rate: int, lengths: tuple[float, ...] = LENGTHS_S, seed: int = 0) -> list[np.ndarray]:
    """Items of the given lengths cut from different places of real speech."""
    whole = _speech(sum(lengths) + 0.5, rate, seed)
    out, at = [], 0
    for s in lengths:
        n = int(s * rate)
        out.append(np.ascontiguousarray(whole[:, at : at + n]))
        at += n
    return out


def _ok(result: CodedAudio | Exception) -> CodedAudio:
    """The CodedAudio of a pair, failing the test with the pair's exception otherwise."""
    if isinstance(result, Exception):
        raise AssertionError(f"pair failed: {result!r}")
    return result


def _assert_same(a: dict[str, CodedAudio | Exception], b: dict[str, CodedAudio | Exception], atol: float = 1e-5) -> None:
    """Identical bitstreams and decodes within ``atol`` at every point."""
    assert a.keys() == b.keys()
    for name in a:
        x, y = _ok(a[name]), _ok(b[name])
        assert x.bitstream == y.bitstream, f"bitstream differs at {name}"
        assert x.audio.shape == y.audio.shape and x.audio.dtype == np.float32
        np.testing.assert_allclose(x.audio, y.audio, atol=atol, rtol=0, err_msg=name)


# --- codecs ---------------------------------------------------------------------------------------

SMALL_ENCODEC = dict(num_filters=4, hidden_size=16, codebook_dim=16, num_lstm_layers=1, num_residual_layers=1)
SMALL_MIMI = dict(hidden_size=32, num_filters=4, codebook_dim=16, vector_quantization_hidden_dimension=16,
                  num_hidden_layers=1, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2,
                  head_dim=16, upsample_groups=32)


def _random_codebooks(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """Random codebook vectors of std ``scale``: transformers initialises them to zeros (every code would be 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("codebook.embed") or name.endswith("codebook.embed_sum"):  # EnCodec, Mimi
                buf.copy_(scale * torch.randn(buf.shape, generator=g))
            elif name.endswith("codebook.cluster_usage"):  # Mimi's vectors are embed_sum / cluster_usage
                buf.fill_(1.0)
    return model


def _random_encodec(transformers: object) -> torch.nn.Module:
    """A random-init EnCodec whose codes follow the audio: encoder biases zeroed (they dominate its latent
    otherwise), codebooks at the latent's scale."""
    torch.manual_seed(0)
    model = transformers.EncodecModel(transformers.EncodecConfig(**SMALL_ENCODEC)).eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        for name, param in model.encoder.named_parameters():
            if name.endswith("bias"):
                param.zero_()
        probe = 0.1 * torch.randn(1, 1, 24_000, generator=torch.Generator().manual_seed(3))
        scale = float(model.encoder(probe).std())
    return _random_codebooks(model, scale, 1)


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-init EnCodec 24 kHz and Mimi, saved with save_pretrained (nothing is downloaded)."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf-batching")
    _random_encodec(transformers).save_pretrained(str(root / "encodec"))
    torch.manual_seed(0)
    mimi = transformers.MimiModel(transformers.MimiConfig(**SMALL_MIMI))
    _random_codebooks(mimi, 0.05, 2).save_pretrained(str(root / "mimi"))
    return {"encodec": root / "encodec", "mimi": root / "mimi"}


#: points coded per codec (a few per codec keep the file fast; prefixes and both VRVQ families included)
POINTS = {"dac": ["1", "8"], "vrvq": ["L2", "n1", "n8"], "eulerodec": ["6k", "12k-n2"],
          "encodec": ["1.5", "24"], "mimi": ["8", "32"]}


def _codec(kind: str, hf_folders: dict[str, Path] | None = None) -> Codec:
    """A loaded codec of ``kind`` (shipped checkpoints, or the random-init transformers folders)."""
    if kind in ("encodec", "mimi"):
        from bench.codecs.encodec import EncodecCodec
        from bench.codecs.mimi import MimiCodec

        assert hf_folders is not None
        cls = EncodecCodec if kind == "encodec" else MimiCodec
        return cls(checkpoint=str(hf_folders[kind])).load()
    return {"dac": DACCodec, "vrvq": VRVQCodec, "eulerodec": EuleroDecCodec}[kind]().load()


def _ops(codec: Codec, kind: str) -> list:
    return [codec.spec.op(name) for name in POINTS[kind]]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Codec]:
    return {kind: _codec(kind) for kind in ("dac", "vrvq", "eulerodec")}


# --- batched == unbatched -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dac", "vrvq", "eulerodec", "encodec"])
def test_batched_equals_unbatched(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "encodec":
        codec = _codec(kind, request.getfixturevalue("hf_folders"))
    else:
        codec = request.getfixturevalue("shipped")[kind]
    layout = codec.frame_layout()
    assert layout is not None
    rate = codec.spec.sample_rate_hz
    items = _items(rate)
    ops = _ops(codec, kind)
    batched = code_batch(codec, ops, items, max_batch_samples=BUDGET)
    rows = [s for i, x in enumerate(items) for s in plan_segments(i, x.shape[-1], layout)]
    assert max(len(b) for b in plan_batches(rows, BUDGET, 1)) >= 2  # some items really shared a batch
    assert "encode: batch of 1 rows" not in _ok(batched[1][ops[0].name]).timing  # 1.3 s shared its batch
    for item, result in zip(items, batched, strict=True):
        alone = code_batch(codec, ops, [item])[0]
        _assert_same(result, alone)
        for op in ops:
            coded = _ok(result[op.name])
            encoded = codec.from_bytes(coded.bitstream)
            assert encoded.num_samples == item.shape[-1] and encoded.batch_size == 1
            assert coded.audio.shape == item.shape
            assert coded.encode_s > 0 and coded.decode_s > 0
            # measured kbps counts no padding: the bitstream holds frames(T) code frames only
            assert len(coded.bitstream) == len(codec.to_bytes(encoded))
            assert _codes(encoded.payload).shape[-1] == layout.frames(op, item.shape[-1])
            assert _codes(encoded.payload).unique().numel() > 4  # codes that follow the audio: a test that can fail


def test_item_does_not_depend_on_batch_mates(shipped: dict[str, Codec]) -> None:
    for kind in ("dac", "vrvq"):
        codec = shipped[kind]
        rate = codec.spec.sample_rate_hz
        x = _items(rate, (1.3,), seed=3)[0]
        mates_a = _items(rate, (1.6, 1.9), seed=5)
        mates_b = _items(rate, (1.1, 1.5, 1.99), seed=7)
        ops = _ops(codec, kind)
        first = code_batch(codec, ops, [mates_a[0], x, mates_a[1]], max_batch_samples=BUDGET)[1]
        second = code_batch(codec, ops, [x, *mates_b], max_batch_samples=BUDGET)[0]
        _assert_same(first, second)
        assert "batch of 3 rows" in _ok(first[ops[0].name]).timing
        assert "batch of 4 rows" in _ok(second[ops[0].name]).timing


# --- shared encodes give the codes of a direct encode ---------------------------------------------

def _padded(x: np.ndarray, layout: FrameLayout) -> torch.Tensor:
    """The canonical encode input: ``x`` zero-padded to its padded length, as ``[1, C, P]``."""
    p = layout.padded(x.shape[-1])
    return torch.from_numpy(np.pad(x, ((0, 0), (0, p - x.shape[-1]))))[None]


def test_prefix_codes_equal_direct_encode(shipped: dict[str, Codec]) -> None:
    x = _items(24_000, (0.6,), seed=2)[0]
    depths = {"dac": ["1", "4", "8"], "eulerodec": ["6k-n2", "6k", "12k-n4", "12k"]}
    for kind, names in depths.items():
        codec = shipped[kind]
        layout = codec.frame_layout()
        assert layout is not None
        ops = [codec.spec.op(name) for name in names]
        results = code_batch(codec, ops, [x])[0]
        wav = _padded(x, layout)
        for op in ops:
            got = codec.from_bytes(_ok(results[op.name]).bitstream).payload
            frames = layout.frames(op, x.shape[-1])
            with torch.inference_mode():
                if kind == "dac":
                    direct = codec.network().encode(wav, int(op.params["n_codebooks"]))
                else:
                    direct = codec.network(op.params["model"]).encode(wav, int(op.params["n_codebooks"]))
            assert direct.shape[1] == got.shape[1]
            assert torch.equal(got, direct[..., :frames]), f"{kind}@{op.name}"


def test_vrvq_points_share_one_encoder_pass(shipped: dict[str, Codec], monkeypatch: pytest.MonkeyPatch) -> None:
    codec = shipped["vrvq"]
    layout = codec.frame_layout()
    assert layout is not None
    model = codec.network()
    calls = []
    real = model.analyse

    def counting(wav: torch.Tensor, with_importance: bool = True) -> tuple:
        calls.append(tuple(wav.shape))
        return real(wav, with_importance)

    items = _items(24_000, (0.6, 0.9), seed=4)  # one bucket (1 s): one batch
    ops = codec.spec.operating_points  # every VBR level and CBR depth
    monkeypatch.setattr(model, "analyse", counting)
    results = code_batch(codec, ops, items, max_batch_samples=BUDGET)
    assert len(calls) == 1, f"the encoder ran {len(calls)} times for {len(ops)} points"
    monkeypatch.undo()
    for x, result in zip(items, results, strict=True):
        frames = layout.frames(ops[0], x.shape[-1])
        wav = _padded(x, layout)
        for op in ops:
            got = codec.from_bytes(_ok(result[op.name]).bitstream).payload
            codes, counts = codec.encode_direct(wav, op)  # VRVQ.encode_frames at this point alone
            assert torch.equal(got["codes"], codes[..., :frames]), op.name
            assert torch.equal(got["counts"], counts[..., :frames]), op.name


# --- long items in windows ------------------------------------------------------------------------

def _codes(payload: object) -> torch.Tensor:
    """The codes tensor of a payload (DAC/EuleroDec tensor, VRVQ dict, transformers HFCodes), frames last."""
    if isinstance(payload, dict):
        return payload["codes"]
    return payload if isinstance(payload, torch.Tensor) else payload.codes  # type: ignore[attr-defined]


def _snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    err = float(((ref - y) ** 2).sum())
    return math.inf if err == 0 else 10 * math.log10(float((ref**2).sum()) / err)


@pytest.mark.parametrize("kind", ["dac", "vrvq", "eulerodec"])
def test_chunked_matches_unchunked(kind: str, shipped: dict[str, Codec]) -> None:
    codec = shipped[kind]
    layout = codec.frame_layout()
    assert layout is not None
    hop = layout.hop_samples
    x = _speech(7.3, 24_000, seed=9)  # 3 windows of 2.5 s chunks with 1 s context
    ops = _ops(codec, kind)[:2] if kind != "vrvq" else [codec.spec.op("L2"), codec.spec.op("n8")]
    try:
        codec.set_coding(chunk_samples=(x.shape[-1] // hop + 2) * hop)  # one piece
        whole = code_batch(codec, ops, [x])[0]
        codec.set_coding(chunk_samples=(60_000 // hop) * hop, context_samples=math.ceil(24_000 / hop) * hop)
        chunked_layout = codec.frame_layout()
        assert chunked_layout is not None
        assert len(plan_segments(0, x.shape[-1], chunked_layout)) == 3
        chunked = code_batch(codec, ops, [x], max_batch_samples=BUDGET)[0]
        assert codec.fingerprint_info()["coding"]["layout"]["chunk_samples"] == chunked_layout.chunk_samples
    finally:
        codec._coding_overrides = {}
    for op in ops:
        a, b = _ok(whole[op.name]), _ok(chunked[op.name])
        assert len(a.bitstream) == len(b.bitstream) or kind == "vrvq" and op.kind == "vbr"
        ca, cb = _codes(codec.from_bytes(a.bitstream).payload), _codes(codec.from_bytes(b.bitstream).payload)
        same = float((ca == cb).float().mean())
        assert same >= CHUNK_MIN_SAME_CODES, f"{kind}@{op.name}: {same:.4f} of codes identical"
        assert b.audio.shape == x.shape
        assert _snr_db(a.audio, b.audio) >= CHUNK_MIN_SNR_DB, f"{kind}@{op.name}: {_snr_db(a.audio, b.audio):.1f} dB"
        assert "3 windows" in b.timing


def test_segments_cover_the_item() -> None:
    layout = FrameLayout(320, lambda _op, n: math.ceil(n / 320), pad_step=3200, chunk_samples=6400,
                         context_samples=1280)
    for n in (1, 3200, 9000, 9600, 20_001, 64_000):
        segs = plan_segments(0, n, layout)
        assert segs[0].keep_start == 0 and segs[-1].keep_stop == n
        for a, b in zip(segs, segs[1:]):
            assert a.keep_stop == b.keep_start and a.length == b.length
        for s in segs:
            assert s.start % 320 == 0 and s.start <= s.keep_start and s.keep_stop <= s.start + s.length
            assert s.keep_start - s.start >= min(s.keep_start, layout.context_samples)
        if len(segs) > 1:
            assert segs[-1].start + segs[-1].length == layout.padded(n)  # the end sees the canonical zeros


# --- codecs without a frame layout ----------------------------------------------------------------

def test_opus_goes_through_code_batch_item_by_item() -> None:
    pytest.importorskip("av")
    from bench.codecs.opus import OpusCodec

    codec = OpusCodec().load()
    assert codec.frame_layout() is None
    ops = [codec.spec.op("6"), codec.spec.op("16")]
    items = _items(48_000, (0.7, 1.3))
    results = code_batch(codec, ops, items)
    for x, result in zip(items, results, strict=True):
        for op in ops:
            got = _ok(result[op.name])
            bitstream = codec.to_bytes(codec.encode(torch.from_numpy(x)[None], op))
            assert got.bitstream == bitstream
            decoded = codec.decode(codec.from_bytes(bitstream))[0].numpy()
            np.testing.assert_array_equal(got.audio, decoded)
            assert got.timing.startswith("item by item")


def test_mimi_is_coded_item_by_item(hf_folders: dict[str, Path]) -> None:
    """Mimi has no frame layout: on the CPU a batch of 3 flipped a few late-stage RVQ codes (near ties moved by
    a ~4e-6 difference in a convolution's output at another batch size), so batching would change values."""
    codec = _codec("mimi", hf_folders)
    assert codec.frame_layout() is None and codec.fingerprint_info()["coding"]["layout"] is None
    ops = _ops(codec, "mimi")
    items = _items(codec.spec.sample_rate_hz, (0.7, 1.3))
    results = code_batch(codec, ops, items, max_batch_samples=BUDGET)
    for x, result in zip(items, results, strict=True):
        alone = code_batch(codec, ops, [x])[0]
        _assert_same(result, alone)
        for op in ops:
            got = _ok(result[op.name])
            with torch.inference_mode():
                bitstream = codec.to_bytes(codec.encode(torch.from_numpy(x)[None], op))
                decoded = codec.decode(codec.from_bytes(bitstream))[0].numpy()[:, : x.shape[-1]]
            assert got.bitstream == bitstream
            np.testing.assert_array_equal(got.audio, decoded)
            assert got.audio.shape == x.shape and got.timing.startswith("item by item")
            assert "shared 'full' encode split over 2 points" in got.timing


# --- failures stay with their pair ----------------------------------------------------------------

def test_failing_item_fails_only_its_pairs(shipped: dict[str, Codec], monkeypatch: pytest.MonkeyPatch) -> None:
    codec = shipped["dac"]
    ops = _ops(codec, "dac")
    items = _items(24_000, (1.3, 1.6, 2.5))
    bad = items[1].copy()
    bad[0, 0] = 0.987654  # the marker the patched encoder refuses
    clean = code_batch(codec, ops, items, max_batch_samples=BUDGET)
    real_shared = codec.encode_shared

    def refusing(wav: torch.Tensor, op: object) -> None:
        if bool((wav[:, 0, 0] == float(np.float32(0.987654))).any()):
            raise ValueError("refused the marked item")
        real_shared(wav, op)

    monkeypatch.setattr(codec, "encode_shared", refusing)
    wrong_channels = np.zeros((2, 24_000), np.float32)
    results = code_batch(codec, ops, [items[0], bad, items[2], wrong_channels], max_batch_samples=BUDGET)
    assert all(isinstance(results[1][op.name], ValueError) for op in ops)
    assert all(isinstance(results[3][op.name], ValueError) for op in ops)
    _assert_same(results[0], clean[0])  # its batch failed and was retried alone: the same values
    _assert_same(results[2], clean[2])
    assert "retried" in _ok(results[0][ops[0].name]).timing
    monkeypatch.undo()

    real_decode = codec.decode
    nan_length = codec.frame_layout().padded(items[2].shape[-1])  # item 2 is alone in its bucket (3 s)

    def nan_at_one_point(encoded: Encoded) -> torch.Tensor:
        out = real_decode(encoded)
        if encoded.operating_point == "8" and encoded.num_samples == nan_length:
            out[:, :, 100] = float("nan")
        return out

    monkeypatch.setattr(codec, "decode", nan_at_one_point)
    results = code_batch(codec, ops, items, max_batch_samples=BUDGET)
    failure = results[2]["8"]
    assert isinstance(failure, RuntimeError) and "dac@8" in str(failure)
    _assert_same({k: v for k, v in results[2].items() if k != "8"}, {k: v for k, v in clean[2].items() if k != "8"})
    _assert_same(results[0], clean[0])
    _assert_same(results[1], clean[1])


def test_layout_is_in_the_fingerprint(shipped: dict[str, Codec]) -> None:
    codec = DACCodec()
    info = codec.fingerprint_info()["coding"]
    assert info["policy"] and info["layout"] == {"hop_samples": 320, "pad_step": 24_000, "chunk_samples": 720_000,
                                                 "context_samples": 24_000}
    before = codec.fingerprint
    codec.set_coding(pad_step=48_000)
    assert codec.fingerprint != before
    with pytest.raises(ValueError, match="multiple of the hop"):
        codec.set_coding(pad_step=1000)
    pytest.importorskip("av")
    from bench.codecs.opus import OpusCodec

    assert OpusCodec().fingerprint_info()["coding"]["layout"] is None
