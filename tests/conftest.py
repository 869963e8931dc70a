"""Shared fixtures: the ``shared/`` folder (see ``shared_paths``), fixed global RNG seeds before every
test, an isolated cache per session, and a single-thread torch fixture."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from shared_paths import SHARED_DIR

GLOBAL_SEED = 0


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "audio").is_dir():
        pytest.skip(f"shared audio not found at {SHARED_DIR} (set BENCH_SHARED_DIR to point elsewhere)")
    return SHARED_DIR


@pytest.fixture(autouse=True)
def _seed_global_rngs() -> None:
    """Seed python's ``random``, numpy's global RNG and torch's global RNG (CPU and CUDA) before each test.

    A safety net, not a substitute: every test (or its fixture) seeds what it draws itself, with
    ``torch.manual_seed``, ``np.random.default_rng(seed)`` or a ``torch.Generator``. This fixture only
    makes sure that whatever a test leaves unseeded (a module's weight initialisation inside library
    code, say) does not depend on which tests ran before it. pytest-randomly, when active, reseeds
    ``random`` and numpy again (from ``--randomly-seed``) just before the test body, but never torch;
    the suite passes with or without it. Module- and session-scoped fixtures are set up before this
    fixture runs, so they seed themselves.
    """
    import torch

    random.seed(GLOBAL_SEED)
    np.random.seed(GLOBAL_SEED)
    torch.manual_seed(GLOBAL_SEED)


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
