"""Default R-D sweeps and the shared full-depth encoding of RVQ codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.codecs.base import select_codecs
from bench.registry import CODECS


def _codec(name: str):
    try:
        codec = CODECS.get(name)()
        codec.spec  # noqa: B018 - raises when the shipped checkpoint is missing
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"{name} unavailable: {exc}")
    return codec.load("cpu")


@pytest.mark.parametrize("name", ["dac", "eulerodec", "vrvq"])
def test_bare_name_selects_the_sweep_and_star_selects_all(name):
    codec = _codec(name)
    all_ops = [p.name for p in codec.spec.operating_points]
    sweep = [s.op.name for s in select_codecs(name)]
    assert set(sweep) <= set(all_ops) and len(sweep) >= 2
    assert [s.op.name for s in select_codecs(f"{name}@*")] == all_ops
    if codec.spec.sweep:
        assert sweep == [p for p in all_ops if p in codec.spec.sweep]


@pytest.mark.parametrize("name", ["dac", "eulerodec"])
def test_memoized_full_depth_encoding_equals_direct_prefix_encoding(name):
    codec = _codec(name)
    rng = np.random.default_rng(0)
    wav = torch.from_numpy((0.1 * rng.standard_normal((1, 1, 12000))).astype(np.float32))
    models = getattr(codec, "models", None) or {"": codec.model}
    for op in codec.spec.operating_points:
        enc = codec.encode(wav, op)
        codes = torch.as_tensor(enc.payload)
        n = codes.shape[1]
        model = models[op.name.split("-")[0]] if len(models) > 1 else next(iter(models.values()))
        with torch.inference_mode():
            direct = model.encode(wav, n)
        assert torch.equal(codes, direct.cpu()), op.name
