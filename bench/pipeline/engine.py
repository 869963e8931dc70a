"""Where scoring runs: a spawn process pool (workers exit with their parent) or inline.

``score_task`` is what a worker does for one pair: plain data in, plain data out (picklable).
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from bench.datasets.base import Item


def _init_worker(parent_pid: int | None = None) -> None:
    """Pool initializer (see ``bench.workers.init_metric_worker``)."""
    from bench.workers import init_metric_worker

    init_metric_worker(parent_pid)


def score_task(ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: Item,
               align: str) -> dict[str, Any]:
    """Score one pair with the named metrics; returns plain data (picklable; the frozen Item travels as is)."""
    from bench.pipeline.scoring import score_pair
    from bench.registry import METRICS

    specs = [METRICS.get(n) for n in metric_names]
    res = score_pair(ref, deg, sr, specs, item=item, align=align)
    return {
        "values": {k: (v.value, v.error, v.extra) for k, v in res.values.items()},
        "skipped": {k: s.reason for k, s in res.skipped.items()},
    }


class InlineExecutor:
    """Same surface as an executor, for --workers 1 (no process overhead; easy to debug).

    Scores with torch on one thread, as the pool's workers do, so a value never depends on
    ``--workers`` (a float32 sum split over more threads differs in its last bits).
    """

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        """Run ``fn(*args)`` now, on one torch thread; the future holds its result or its exception."""
        import torch

        fut: cf.Future[Any] = cf.Future()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(exc)
        finally:
            torch.set_num_threads(threads)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Nothing to stop: every task already ran."""
