"""WER end to end through the runner on real read speech with transcripts (issue 3).

The folder dataset picks up the sidecar ``.txt`` transcripts; the lossless anchor (pcm16) and a
test-only codec that buries the signal in noise go through the whole pipeline (bytes included).
The noisy reconstruction must be recognised worse.
"""

from __future__ import annotations

import sqlite3
import struct

import numpy as np
import pytest
import torch

from bench.codecs.base import Codec, CodecSpec, Encoded, OperatingPoint, register_codec
from bench.registry import CODECS
from bench.pipeline.run import run_benchmark
from bench.types import RunConfig


class _NoisyPcmCodec(Codec):
    """Test-only: 16-bit PCM of the input plus white noise at 0 dB SNR (a deliberately awful codec)."""

    name = "test_noisy0db"

    @property
    def spec(self) -> CodecSpec:
        return CodecSpec(self.name, 16000, 1, [OperatingPoint("0db", 256.0, {"snr_db": 0.0})])

    def encode(self, wav, operating_point):
        wav = self.check_wav(wav)
        gen = torch.Generator().manual_seed(0)
        power = wav.pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-12)
        noisy = wav + torch.randn(wav.shape, generator=gen) * power.sqrt()
        q = (noisy.clamp(-1, 1) * 32767).round().to(torch.int16)
        return Encoded(self.name, "0db", 16000, wav.shape[1], wav.shape[2], wav.shape[0], q)

    def decode(self, encoded):
        return encoded.payload.float() / 32767

    def pack_payload(self, encoded):
        return encoded.payload.numpy().astype("<i2").tobytes()

    def unpack_payload(self, body, header):
        q = np.frombuffer(body, dtype="<i2").reshape(header.batch_size, header.num_channels, header.num_samples)
        return torch.from_numpy(q.copy())


if _NoisyPcmCodec.name not in CODECS:
    register_codec(_NoisyPcmCodec.name, _NoisyPcmCodec, in_all=False)


@pytest.mark.slow
def test_wer_through_runner_clean_vs_noisy(tmp_path, shared_dir):
    root = shared_dir / "audio" / "fixtures" / "speech-librivox-with-transcripts"
    run = run_benchmark(RunConfig(codecs=f"pcm16,{_NoisyPcmCodec.name}", dataset="folder", root=str(root),
                                  dataset_options={"domain": "speech"}, metrics="wer", limit=3,
                                  out_dir=str(tmp_path / "run"), workers=2, progress=False))
    with sqlite3.connect(run / "results.sqlite") as c:
        got = c.execute("SELECT item_id, codec, value, status, error FROM results WHERE metric='wer'").fetchall()
    assert len(got) == 6
    assert all(s == "ok" for *_, s, _ in got), got
    clean = np.mean([v for _, c, v, _, _ in got if c == "pcm16"])
    noisy = np.mean([v for _, c, v, _, _ in got if c == _NoisyPcmCodec.name])
    print(f"WER through the runner: pcm16 {clean:.3f}, 0 dB noise {noisy:.3f}")
    assert clean < 0.6
    assert noisy > clean + 0.1
