"""Where codec work and scoring run: the engine interface and the local engine.

An engine is given the run's codec selections once (:meth:`Engine.start`: each codec is built and
loaded where it will run, and reports its fingerprint), then receives units of work:

* :meth:`Engine.code` - a :class:`~bench.pipeline.code.CodeJob` (one codec, a group of prepared
  references, the operating points each still needs), run by :func:`~bench.pipeline.code.run_code_job`
  where the codec's model lives; returns the coded pairs.
* :meth:`Engine.score` - one pair, scored by :func:`score_task` (plain data in, plain data out).

The driver (``bench.pipeline.run``) is the only writer of the results database, whatever the engine.
The local engine codes in one background thread of this process (each model loaded once, codec work
overlapping scoring) and scores in a spawn process pool started once per run (workers exit with their
parent), or inline for one worker. The Ray engine (``bench.pipeline.ray_engine``) spreads both over a
cluster.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.codecs.base import Codec, Selection
    from bench.datasets.base import Item
    from bench.pipeline.code import CodeJob, CodeOutcome


def _init_worker(parent_pid: int | None = None) -> None:
    """Pool initializer (see ``bench.workers.init_metric_worker``)."""
    from bench.workers import init_metric_worker

    init_metric_worker(parent_pid)


def _warm_worker() -> int:
    """A first task for a new pool worker: import the metric modules before the first pair arrives."""
    from bench.registry import METRICS

    return len(METRICS.names())


def score_task(ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: Item,
               align: str) -> dict[str, Any]:
    """Score one pair with the named metrics; returns plain data (picklable; the frozen Item travels as is).

    ``values``: name -> (value, error, extra, compute_s); ``skipped``: name -> reason; ``prep_s``: the
    seconds of alignment and resampling.
    """
    from bench.pipeline.scoring import score_pair
    from bench.registry import METRICS

    specs = [METRICS.get(n) for n in metric_names]
    res = score_pair(ref, deg, sr, specs, item=item, align=align)
    return {
        "values": {k: (v.value, v.error, v.extra, v.compute_s) for k, v in res.values.items()},
        "skipped": {k: s.reason for k, s in res.skipped.items()},
        "prep_s": res.prep_s,
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


class Engine(ABC):
    """Runs a run's codec work and scoring; the driver submits work and writes every row itself."""

    #: the name ``--engine`` takes
    name: str = ""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    @abstractmethod
    def start(self, selections: list[Selection], device: str, cache: ReconCache) -> tuple[dict[str, str], dict[str, str]]:
        """Build and load every selected codec where it will run: (key -> fingerprint, key -> load failure)."""

    @abstractmethod
    def code(self, job: CodeJob) -> cf.Future[list[CodeOutcome]]:
        """Queue one codec job; its future holds the coded pairs (a pair that failed carries its reason)."""

    @abstractmethod
    def score(self, ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: Item,
              align: str) -> cf.Future[dict[str, Any]]:
        """Queue the scoring of one pair (:func:`score_task`'s arguments)."""

    @abstractmethod
    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop the engine's workers (``cancel``: drop queued work, do not wait)."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the engine: its name and worker count."""
        return {"engine": self.name, "workers": self.workers}


def load_codecs(selections: list[Selection], device: str) -> tuple[dict[str, Codec], dict[str, str], dict[str, str]]:
    """Load each selected codec once: (key -> codec, key -> fingerprint, key -> reason it could not be loaded)."""
    from bench.pipeline.memory import measure_load

    codecs: dict[str, Codec] = {}
    fingerprints: dict[str, str] = {}
    errors: dict[str, str] = {}
    for sel in selections:
        if sel.key in codecs or sel.key in errors:
            continue
        try:
            with measure_load(sel.codec, device):
                codecs[sel.key] = sel.codec.load(device)
            fingerprints[sel.key] = sel.codec.fingerprint
        except Exception as exc:  # noqa: BLE001 - recorded for each of its pairs; the run goes on
            codecs.pop(sel.key, None)
            errors[sel.key] = f"{sel.key} could not be loaded: {type(exc).__name__}: {exc}"
    return codecs, fingerprints, errors


class LocalEngine(Engine):
    """This machine: codec work in one background thread (models loaded once), scoring in a process pool.

    The coding thread runs while the pool scores what it coded before, so neither waits for the other;
    the pool's workers start once per run (one torch thread each) and live until the run ends.
    """

    name = "local"

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.codecs: dict[str, Codec] = {}
        self.fingerprints: dict[str, str] = {}
        self.cache: ReconCache | None = None
        self._coder = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-coder")
        if self.workers > 1:
            from bench.workers import one_thread_children

            one_thread_children()
        self._pool: cf.Executor | InlineExecutor = (
            InlineExecutor() if self.workers <= 1 else
            cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),)))
        if self.workers > 1:  # start every worker now, while the codecs load: start-up is paid once, up front
            for _ in range(self.workers):
                self._pool.submit(_warm_worker)

    def start(self, selections: list[Selection], device: str, cache: ReconCache) -> tuple[dict[str, str], dict[str, str]]:
        """Load the codecs in this process (the plan's own instances)."""
        self.cache = cache
        self.codecs, self.fingerprints, errors = load_codecs(selections, device)
        return dict(self.fingerprints), errors

    def code(self, job: CodeJob) -> cf.Future[list[CodeOutcome]]:
        """Queue the job on the coding thread."""
        from bench.pipeline.code import run_code_job

        if self.cache is None:
            raise RuntimeError("LocalEngine.code called before start")
        return self._coder.submit(run_code_job, self.codecs[job.key], self.fingerprints[job.key], job, self.cache)

    def score(self, ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: Item,
              align: str) -> cf.Future[dict[str, Any]]:
        """Queue one pair on the metric pool (or score it now, with one worker)."""
        return self._pool.submit(score_task, ref, deg, sr, metric_names, item, align)

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop the coding thread and the pool."""
        self._coder.shutdown(wait=not cancel, cancel_futures=cancel)
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
