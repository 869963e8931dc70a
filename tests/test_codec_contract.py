"""The contract every registered codec keeps, checked for each codec and operating point.

Parametrised over ``CODECS.names()`` at collection time, so a codec registered later (dac, vrvq,
eulerodec...) is checked without touching this file. Codecs with more than five operating points
are checked at the first, middle and last point to keep the run short. A codec whose spec cannot
be built or that cannot load (a missing checkpoint, a missing backend) is skipped with the reason.

The contract:
* ``decode(encode(x))`` has exactly ``x``'s shape ``[B, C, T]``, for an odd length too, and is finite;
* it lines up with ``x`` sample for sample: the cross-correlation peaks at lag 0, on real speech
  (``../shared/audio``, skipped if absent) and on a synthetic chirp;
* ``from_bytes(to_bytes(e))`` decodes to the same audio as ``e`` and re-serialises to the same bytes,
  and its header carries the codec, operating point, rate, channels, length and batch size;
* truncated bytes, trailing bytes, a bad magic and another codec's name raise BitstreamError (or a
  clear ValueError);
* measured kbps (``len(bytes) * 8 / duration / 1000``) is within 10% of nominal on ~5 s of real speech
  for every constant-rate point (every Opus bitrate among them); variable-rate points are exempt.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
import torch

from bench.audio import load_audio, resample, to_channels
from bench.codecs.base import (
    BITSTREAM_MAGIC, BitstreamError, Codec, Encoded, OperatingPoint, pack_header, unpack_header,
)
from bench.registry import CODECS
from shared_paths import SHARED_AUDIO

SPEECH_5S = SHARED_AUDIO / "train" / "speech" / "vctk-p239" / "p239_004.flac"  # 5.0 s, 48 kHz, real speech
SHORT_START_S, SHORT_DURATION_S = 0.5, 1.5
MAX_LAG_S = 0.02  # search +-20 ms for the cross-correlation peak
MIN_PEAK_CORRELATION = 0.2  # below this the reconstruction keeps too little waveform to align on
KBPS_TOLERANCE = 0.10
MAX_POINTS_ALL = 5

torch.set_num_threads(1)


# --- collection ------------------------------------------------------------------------------


def _points_to_check(ops: list[OperatingPoint]) -> list[OperatingPoint]:
    if len(ops) <= MAX_POINTS_ALL:
        return list(ops)
    picks = [ops[0], ops[len(ops) // 2], ops[-1]]
    return list({p.name: p for p in picks}.values())


def _cases() -> list:
    cases = []
    for name in CODECS.names():
        try:
            ops = CODECS.get(name)().spec.operating_points
        except Exception as exc:  # noqa: BLE001 - a broken codec is reported as a skip with its reason
            cases.append(pytest.param(name, None, id=name, marks=pytest.mark.skip(reason=f"{name}: no spec ({exc})")))
            continue
        if not ops:
            cases.append(pytest.param(name, None, id=name, marks=pytest.mark.skip(reason=f"{name}: no operating points")))
        for op in _points_to_check(ops):
            cases.append(pytest.param(name, op.name, id=f"{name}@{op.name}"))
    return cases


CASES = _cases()


def test_reference_codecs_are_registered():
    """The contract below must never silently run over nothing."""
    assert {"opus", "mp3", "pcm16"} <= set(CODECS.names())
    assert any(c.id == "opus@6" for c in CASES) and any(c.id == "opus@24" for c in CASES)


# --- shared state: one loaded instance per codec, one encode per (codec, point, signal) -----------


@lru_cache(maxsize=None)
def _load(name: str) -> tuple[Codec | None, str]:
    try:
        return CODECS.get(name)().load("cpu"), ""
    except Exception as exc:  # noqa: BLE001 - a codec that cannot load is skipped, with the reason
        return None, f"{type(exc).__name__}: {exc}"


def _codec(name: str, op_name: str | None) -> Codec:
    codec, reason = _load(name)
    if codec is None:
        pytest.skip(f"{name} cannot load: {reason}")
    assert op_name is not None
    return codec


@lru_cache(maxsize=None)
def _real_speech(sample_rate_hz: int, channels: int, start_s: float, duration_s: float | None) -> np.ndarray | None:
    if not SPEECH_5S.is_file():
        return None
    audio = load_audio(SPEECH_5S, start_s=start_s, duration_s=duration_s)
    x = resample(to_channels(audio.samples, channels), audio.sample_rate_hz, sample_rate_hz)
    return np.ascontiguousarray(x, dtype=np.float32)


def _speech(codec: Codec, *, full: bool) -> torch.Tensor:
    spec = codec.spec
    x = _real_speech(spec.sample_rate_hz, spec.channels, 0.0 if full else SHORT_START_S,
                     None if full else SHORT_DURATION_S)
    if x is None:
        pytest.skip(f"real speech not found at {SPEECH_5S}")
    return torch.from_numpy(x)[None]


def _chirp(codec: Codec, duration_s: float = SHORT_DURATION_S) -> torch.Tensor:
    """A 100 Hz -> 0.35*rate log chirp with a 20 ms fade in/out, at -10 dBFS, odd length."""
    spec = codec.spec
    sr = spec.sample_rate_hz
    n = int(duration_s * sr) | 1
    t = np.arange(n) / sr
    f0, f1 = 100.0, 0.35 * sr
    k = np.log(f1 / f0) / duration_s
    x = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    x = (0.3 * x * fade).astype(np.float32)
    return torch.from_numpy(np.tile(x, (spec.channels, 1)))[None]


_ENCODED: dict[tuple[str, str, str], tuple[Encoded, bytes, torch.Tensor]] = {}


def _round_trip(codec: Codec, op_name: str, signal: str) -> tuple[torch.Tensor, Encoded, bytes, torch.Tensor]:
    """(input, encoded, bytes, decode of the bytes), cached per (codec, point, signal)."""
    if signal == "speech":
        x = _speech(codec, full=False)
    elif signal == "speech5s":
        x = _speech(codec, full=True)
    elif signal == "chirp":
        x = _chirp(codec)
    else:
        raise ValueError(signal)
    key = (codec.name, op_name, signal)
    if key not in _ENCODED:
        enc = codec.encode(x, op_name)
        data = codec.to_bytes(enc)
        _ENCODED[key] = (enc, data, codec.decode(codec.from_bytes(data)))
    enc, data, y = _ENCODED[key]
    return x, enc, data, y


def _lag_and_peak(x: torch.Tensor, y: torch.Tensor, max_lag: int) -> tuple[int, float]:
    """Lag (samples, positive = y late) of the cross-correlation peak within +-max_lag, and its value."""
    a = x.double().reshape(x.shape[1], -1).numpy()
    b = y.double().reshape(y.shape[1], -1).numpy()
    n = a.shape[-1]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size))
    cc = np.fft.irfft(spec, size).sum(axis=0)
    window = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])
    norm = np.sqrt(np.sum(a**2) * np.sum(b**2))
    k = int(np.argmax(window))
    return k - max_lag, float(window[k] / norm) if norm > 0 else 0.0


# --- the contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,op_name", CASES)
def test_round_trip_shape_and_length(name, op_name):
    codec = _codec(name, op_name)
    spec = codec.spec
    n = int(1.3 * spec.sample_rate_hz) + 7  # odd, not a multiple of any frame size
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n) / spec.sample_rate_hz
    tone = 0.3 * torch.sin(2 * torch.pi * 220.0 * t)
    x = torch.stack([tone.repeat(spec.channels, 1), 0.1 * torch.randn(spec.channels, n, generator=g)])
    enc = codec.encode(x, op_name)
    assert (enc.codec, enc.operating_point, enc.batch_size, enc.num_channels, enc.num_samples) == (
        name, op_name, 2, spec.channels, n)
    y = codec.decode(codec.from_bytes(codec.to_bytes(enc)))
    assert tuple(y.shape) == (2, spec.channels, n)
    assert y.dtype.is_floating_point and torch.isfinite(y).all()
    assert y.abs().max() > 1e-3, "decoded audio is silent"


@pytest.mark.parametrize("name,op_name", CASES)
@pytest.mark.parametrize("signal", ["speech", "chirp"])
def test_alignment_lag_zero(name, op_name, signal):
    codec = _codec(name, op_name)
    x, _, _, y = _round_trip(codec, op_name, signal)
    lag, peak = _lag_and_peak(x, y, int(MAX_LAG_S * codec.spec.sample_rate_hz))
    if peak < MIN_PEAK_CORRELATION:
        pytest.skip(f"{name}@{op_name} keeps too little of the {signal} waveform to align on (peak {peak:.2f})")
    assert lag == 0, f"{name}@{op_name}: output is {lag} samples {'late' if lag > 0 else 'early'} on {signal}"


@pytest.mark.parametrize("name,op_name", CASES)
def test_bytes_round_trip_decodes_identically(name, op_name):
    codec = _codec(name, op_name)
    x, enc, data, y_bytes = _round_trip(codec, op_name, "speech" if SPEECH_5S.is_file() else "chirp")
    y_direct = codec.decode(enc)
    torch.testing.assert_close(y_bytes, y_direct, rtol=0, atol=1e-6)
    back = codec.from_bytes(data)
    assert (back.codec, back.operating_point, back.sample_rate_hz, back.num_channels, back.num_samples,
            back.batch_size) == (name, op_name, codec.spec.sample_rate_hz, x.shape[1], x.shape[2], 1)
    assert codec.to_bytes(back) == data, "re-serialising the parsed bitstream changes its bytes"


@pytest.mark.parametrize("name,op_name", CASES)
def test_bad_bytes_raise_bitstream_error(name, op_name):
    codec = _codec(name, op_name)
    _, _, data, _ = _round_trip(codec, op_name, "chirp")
    bad = {
        "truncated by one byte": data[:-1],
        "truncated to half": data[: len(data) // 2],
        "header only, cut": data[:9],
        "empty": b"",
        "trailing byte": data + b"\x00",
        "bad magic": b"XX" + data[len(BITSTREAM_MAGIC):],
        "bad version": data[:2] + bytes([data[2] + 1]) + data[3:],
    }
    header, body = unpack_header(data)
    bad["another codec's name"] = pack_header(replace(header, codec=f"not-{name}")) + body
    for what, blob in bad.items():
        with pytest.raises((BitstreamError, ValueError)):
            codec.decode(codec.from_bytes(blob))
            pytest.fail(f"{name}@{op_name}: {what} bitstream was accepted")


@pytest.mark.parametrize("name,op_name", CASES)
def test_measured_kbps_near_nominal(name, op_name):
    codec = _codec(name, op_name)
    op = codec.spec.op(op_name)
    if op.kind == "vbr":
        pytest.skip(f"{name}@{op_name} is variable rate: its measured kbps is a result, not a promise")
    x, _, data, _ = _round_trip(codec, op_name, "speech5s")
    duration_s = x.shape[-1] / codec.spec.sample_rate_hz
    measured_kbps = len(data) * 8 / duration_s / 1000
    assert abs(measured_kbps - op.nominal_kbps) <= KBPS_TOLERANCE * op.nominal_kbps, (
        f"{name}@{op_name}: measured {measured_kbps:.2f} kbps vs nominal {op.nominal_kbps} on {duration_s:.1f} s"
    )


@pytest.mark.parametrize("name,op_name", CASES)
def test_rejects_nan_and_wrong_shape(name, op_name):
    codec = _codec(name, op_name)
    spec = codec.spec
    x = torch.zeros(1, spec.channels, spec.sample_rate_hz // 10)
    x[0, 0, 5] = float("nan")
    with pytest.raises(ValueError):
        codec.encode(x, op_name)
    with pytest.raises(ValueError):
        codec.encode(torch.zeros(spec.channels, 100), op_name)  # [C, T], not [B, C, T]
