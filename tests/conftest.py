"""Shared fixtures: the ``shared/`` folder beside the checkout, and an isolated cache per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "audio").is_dir():
        pytest.skip(f"shared audio not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one thread avoids OpenMP spin-waiting on a shared, oversubscribed CPU.
    Use per module with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory) -> None:
    """Keep the demo set and reconstruction cache of the test session out of the user's ~/.cache."""
    if "BENCH_TEST_KEEP_CACHE" not in os.environ:
        os.environ["BENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
