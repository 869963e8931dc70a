"""Peak memory is measured per codec (its load plus its largest coding job), not once for the whole process."""

from __future__ import annotations

import json
import mmap
import sqlite3
import time

import torch

from bench.codecs.base import Encoded, register_codec
from bench.codecs.pcm import Pcm16Codec
from bench.pipeline.memory import CPU_KIND, measure_job, measure_load, rss_mb
from bench.pipeline.run import run_benchmark
from bench.registry import CODECS
from bench.types import RunConfig

HUNGRY_MB = 300
HEAVY_MB = 200


def _resident(mb: int) -> mmap.mmap:
    """``mb`` MiB of fresh anonymous pages, every page written so it is resident.

    Fresh pages from the kernel, not malloc: numpy's allocator may reuse heap memory that an earlier test freed
    but glibc kept resident, and then RSS does not rise at all (the CI failure this replaced).
    """
    buf = mmap.mmap(-1, mb * 2**20)
    for off in range(0, mb * 2**20, mmap.PAGESIZE):
        buf[off] = 1
    return buf


class HungryCodec(Pcm16Codec):
    """16-bit PCM that touches a 300 MB scratch buffer while encoding (freed after)."""

    name = "test_hungry"

    def encode(self, wav: torch.Tensor, op) -> Encoded:
        scratch = _resident(HUNGRY_MB)
        out = super().encode(wav, op)
        scratch.close()
        return out


class HeavyCodec(Pcm16Codec):
    """16-bit PCM whose load keeps 200 MB of "weights" resident."""

    name = "test_heavy"

    def _load(self) -> None:
        super()._load()
        self.weights = _resident(HEAVY_MB)


for _cls in (HungryCodec, HeavyCodec):
    if _cls.name not in CODECS:
        register_codec(_cls.name, _cls, in_all=False)


def _infos(run_dir) -> dict[str, dict]:
    with sqlite3.connect(run_dir / "results.sqlite") as c:
        return {codec: json.loads(info) for codec, info in c.execute("SELECT codec, info FROM codec_info")}


def test_each_codec_gets_its_own_peak(tmp_path):
    cfg = RunConfig(codecs="pcm16,test_hungry,test_heavy", dataset="demo", metrics="si_sdr", limit=2, workers=1,
                    progress=False, device="cpu", out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    run = run_benchmark(cfg)
    infos = _infos(run)
    assert set(infos) == {"pcm16", "test_hungry", "test_heavy"}
    for info in infos.values():
        assert info["peak_memory_kind"] == CPU_KIND
    assert infos["test_hungry"]["peak_memory_mb"] >= 0.8 * HUNGRY_MB
    assert infos["test_heavy"]["peak_memory_mb"] >= 0.8 * HEAVY_MB
    assert infos["pcm16"]["peak_memory_mb"] < 0.5 * HEAVY_MB  # not the process's figure, which holds the others
    # a resumed run codes nothing (all from the store): the figures measured before are kept, not blanked
    run_benchmark(cfg)
    again = _infos(run)
    assert again["test_hungry"]["peak_memory_mb"] == infos["test_hungry"]["peak_memory_mb"]


def test_measure_job_and_load_on_the_cpu():
    class Box:
        device = torch.device("cpu")

    box, out = Box(), {}
    with measure_load(box, "cpu"):
        box.kept = _resident(64)
    with measure_job(box, out):
        tmp = _resident(96)
        time.sleep(0.3)  # held for many sampling intervals (a loaded machine may start the sampler late)
        tmp.close()
    assert rss_mb() is not None
    assert out["memory_kind"] == CPU_KIND
    assert out["peak_memory_mb"] >= 0.8 * (64 + 96)
