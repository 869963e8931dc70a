"""``bench run --engine ray``: codec work and scoring spread over a Ray cluster (the ``ray`` extra).

* **Codecs**: one actor per codec (selection key ``name`` or ``name:PATH``). It builds the codec from
  the registry (after loading the driver's plugins, named in ``$BENCH_PLUGINS``), loads it on the
  run's device (asking Ray for a GPU, or an equal share of one when there are more codecs than
  GPUs), opens the reconstruction cache at the driver's cache folder, and runs
  :func:`~bench.pipeline.code.run_code_job` for each job of its codec, one at a time. An actor whose
  process dies is started again (``max_restarts``; it loads its codec again) and the job it was
  running is retried (``max_task_retries``).
* **Scoring**: one Ray task per coded pair (one CPU each, torch on one thread) calling
  :func:`~bench.pipeline.engine.score_task`; a task whose worker process died is retried
  (``max_retries``). A pair whose retries are exhausted fails with the reason, as on the local engine.
* **Data**: prepared references, reconstructions and scores travel as plain data through Ray's object
  store (numpy arrays are read zero-copy there); a reference is put once and shared by the scorings
  of all its operating points.
* The driver (``bench.pipeline.run``) stays the only writer of the results database; the workers
  write only the cache, which must be on storage every node sees (``docs/scaling.md``).

The codec fingerprints come from the actors (they loaded the codecs), so a node running other code
gives other fingerprints, and resume recomputes those pairs instead of mixing results.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os
import socket
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import UserError, one_line
from bench.pipeline.engine import Engine, score_task

if TYPE_CHECKING:
    from bench.cache import ReconCache
    from bench.codecs.base import Codec, Selection
    from bench.datasets.base import Item
    from bench.pipeline.code import CodeJob, CodeOutcome

#: restarts of a codec actor whose process died, and retries of the job it was running
ACTOR_RESTARTS = 3
CODE_RETRIES = 3
#: retries of a scoring task whose worker process died (an exception the metric raises is not retried)
SCORE_RETRIES = 3
#: environment variables the workers get from the driver: bench's own (plugins, caches), the Hugging Face cache
FORWARDED_ENV_PREFIXES = ("BENCH_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_")
#: how long joining HOST:PORT may take to answer a TCP connection before the run gives up
CONNECT_TIMEOUT_S = 5.0
#: references kept in the object store for the scorings of their operating points (count, bytes)
SHARED_REFS_MAX = 256
SHARED_REFS_MAX_BYTES = 512 * 2**20


def import_ray() -> Any:
    """The ``ray`` module; :class:`bench.deps.MissingBackendError` (one line naming the extra) when it is absent."""
    from bench.deps import MissingBackendError

    try:
        import ray
    except ImportError as exc:
        raise MissingBackendError("--engine ray needs ray, which is not installed: pip install 'bench[ray]'") from exc
    return ray


def worker_env() -> dict[str, str]:
    """The driver's variables the workers must see (plugins, data and cache folders, Hugging Face settings)."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise UserError unless ``HOST:PORT`` accepts a TCP connection (Ray itself would wait minutes, then exit)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto or HOST:PORT (the head node's GCS port, 6379 by default)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {one_line(exc.strerror or exc)} "
                        "(start one with `ray start --head`, or leave --address out for a local one)") from None


def connect(ray: Any, address: str | None, num_cpus: int) -> bool:
    """Start a local Ray instance (``address`` None) or join a cluster (``auto``, ``HOST:PORT``, ``ray://...``).

    Returns False when Ray was already initialised in this process (that connection is used, and left open).
    """
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local instance sends nothing anywhere
        from bench.workers import one_thread_children

        one_thread_children()  # its workers share this machine's cores, as the local engine's pool does
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
    else:
        if address != "auto" and "://" not in address:
            check_reachable(address)
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError, SystemExit) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UserError(f"cannot start or join {where}: {one_line(exc)}") from None
    return True


def gpu_share(n_actors: int, n_gpus: float) -> float:
    """The GPUs each codec actor asks for: 1 when there are enough, else 1/k so that k actors share each GPU.

    A share that does not divide 1 (2/3 for three codecs on two GPUs) would leave an actor waiting
    forever for a GPU with room; 1/k packs ``k = ceil(actors / GPUs)`` actors on every GPU.
    """
    whole = math.floor(n_gpus)
    if whole < 1:
        raise UserError(f"--device cuda, but the Ray cluster has {n_gpus:g} GPUs (start its nodes with --num-gpus)")
    per_gpu = math.ceil(n_actors / whole)
    return 1.0 if per_gpu <= 1 else 1.0 / per_gpu


def actor_device(device: str) -> str:
    """The device an actor loads on: ``cuda:N`` is ``cuda`` there (Ray makes only the actor's GPUs visible)."""
    return "cuda" if device.startswith("cuda") else device


def codec_checkpoint(key: str) -> tuple[str, str | None]:
    """(registry name, checkpoint) of a selection key; a checkpoint that is a path here is made absolute.

    Workers run in other folders, so a relative path would name another file (or none) there.
    """
    name, sep, path = key.partition(":")
    if not sep:
        return name, None
    local = Path(path).expanduser()
    return name, str(local.resolve()) if local.exists() else path


class CodecActor:
    """One codec, built and loaded where Ray placed this actor; runs its codec's jobs one at a time.

    A failure to build or load is kept (:meth:`ready` reports it) rather than raised, so that the
    run records it for that codec's pairs and goes on, as with the local engine.
    """

    def __init__(self, key: str, checkpoint: str | None, device: str, cache_root: str, refresh: bool,
                 torch_threads: int) -> None:
        import torch

        torch.set_num_threads(torch_threads)  # the driver's count: a CPU decode's rounding depends on it
        self.key = key
        self.codec: Codec | None = None
        self.fingerprint = ""
        self.error: str | None = None
        self.cache: ReconCache | None = None
        try:
            self.codec, self.fingerprint, self.cache = _load_codec(key, checkpoint, device, cache_root, refresh)
        except Exception as exc:  # noqa: BLE001 - recorded for each of its pairs; the run goes on
            self.error = f"{key} could not be loaded on {socket.gethostname()}: {type(exc).__name__}: {exc}"

    def ready(self) -> tuple[str | None, str | None, str]:
        """(fingerprint, None) once loaded, or (None, reason); and the host it runs on."""
        return (None if self.error else self.fingerprint), self.error, socket.gethostname()

    def code(self, job: CodeJob) -> list[CodeOutcome]:
        """Run one codec job here (the model is loaded in this process)."""
        from bench.pipeline.code import run_code_job

        if self.codec is None or self.cache is None:
            raise RuntimeError(self.error or f"{self.key}: codec not loaded")
        return run_code_job(self.codec, self.fingerprint, job, self.cache)

    def cache_problems(self) -> list[str]:
        """The damaged cache entries this actor found (and recomputed)."""
        return list(self.cache.problems) if self.cache is not None else []

    def pid(self) -> int:
        """This actor's process id (tests kill it)."""
        return os.getpid()


def _load_codec(key: str, checkpoint: str | None, device: str, cache_root: str,
                refresh: bool) -> tuple[Codec, str, ReconCache]:
    """Load the driver's plugins, build the codec from the registry, load it on ``device``; open the cache."""
    from bench.cache import ReconCache
    from bench.plugins import load_plugins
    from bench.registry import CODECS

    load_plugins()  # $BENCH_PLUGINS, forwarded from the driver: a plugin codec is found here too
    codec: Codec = CODECS.get(key.partition(":")[0])(checkpoint=checkpoint)
    from bench.pipeline.memory import measure_load

    with measure_load(codec, actor_device(device)):
        codec.load(actor_device(device))
    return codec, codec.fingerprint, ReconCache(cache_root, refresh=refresh)


def _torch_threads() -> int:
    """The torch thread count of this process: the local engine codes with it, so the actors do too."""
    import torch

    return int(torch.get_num_threads())


def score_in_worker(ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: Item,
                    align: str) -> dict[str, Any]:
    """:func:`~bench.pipeline.engine.score_task` on one torch thread, as the local engine's pool workers score."""
    import torch

    torch.set_num_threads(1)
    return score_task(ref, deg, sr, metric_names, item, align)


class RayEngine(Engine):
    """A Ray cluster: an actor per codec (models loaded once, on a GPU or a share of one), a task per scoring."""

    name = "ray"

    def __init__(self, workers: int, *, address: str | None = None, device: str = "cpu") -> None:
        super().__init__(workers)
        self.ray = import_ray()
        self.address = None if address in (None, "", "local") else address
        self.device = device
        self.owns_ray = connect(self.ray, self.address, self.workers)
        resources = self.ray.cluster_resources()
        self.cluster = {"cpus": float(resources.get("CPU", 0.0)), "gpus": float(resources.get("GPU", 0.0)),
                        "nodes": sum(1 for n in self.ray.nodes() if n.get("Alive"))}
        if self.address is not None:  # the cluster's CPUs decide how many scorings run at once; keep them busy
            self.workers = max(self.workers, int(self.cluster["cpus"]))
        self.actors: dict[str, Any] = {}
        self.placement: dict[str, dict[str, Any]] = {}
        self.fingerprints: dict[str, str] = {}
        self.cache: ReconCache | None = None
        self._pending: dict[cf.Future[Any], Any] = {}  # future -> its ObjectRef (kept alive until done)
        self._shared: OrderedDict[int, tuple[np.ndarray, Any]] = OrderedDict()  # id(reference) -> (it, its ObjectRef)
        self._score = self.ray.remote(num_cpus=1, max_retries=SCORE_RETRIES)(score_in_worker).options(
            runtime_env={"env_vars": worker_env()})
        self._closed = False

    def start(self, selections: list[Selection], device: str, cache: ReconCache) -> tuple[dict[str, str], dict[str, str]]:
        """Start one actor per codec key, each loading its codec; (key -> fingerprint, key -> load failure)."""
        self.cache, self.device = cache, device
        keys = list(dict.fromkeys(sel.key for sel in selections))
        gpus = gpu_share(len(keys), self.cluster["gpus"]) if device.startswith("cuda") and keys else 0.0
        actor_cls = self.ray.remote(CodecActor).options(
            num_cpus=0, num_gpus=gpus, max_restarts=ACTOR_RESTARTS, max_task_retries=CODE_RETRIES,
            runtime_env={"env_vars": worker_env()})
        root = str(Path(cache.root).expanduser().resolve())
        torch_threads = _torch_threads()
        for key in keys:
            name, checkpoint = codec_checkpoint(key)
            self.actors[key] = actor_cls.remote(key, checkpoint, device, root, cache.refresh, torch_threads)
        errors: dict[str, str] = {}
        for key, actor in self.actors.items():
            try:
                fingerprint, error, host = self.ray.get(actor.ready.remote())
            except self.ray.exceptions.RayError as exc:  # the actor's process could not even start
                fingerprint, error, host = None, f"{key} could not be loaded: {one_line(exc)}", None
            self.placement[key] = {"host": host, "gpus": gpus}
            if fingerprint is None:
                errors[key] = error or f"{key} could not be loaded"
            else:
                self.fingerprints[key] = fingerprint
        return dict(self.fingerprints), errors

    def code(self, job: CodeJob) -> cf.Future[list[CodeOutcome]]:
        """Queue the job on its codec's actor (retried on the restarted actor should its process die)."""
        if job.key not in self.actors:
            raise RuntimeError(f"RayEngine.code: no actor for {job.key!r} (start was not called with it)")
        return self._track(self.actors[job.key].code.remote(job))

    def score(self, ref: np.ndarray, deg: np.ndarray, sr: int, metric_names: list[str], item: Item,
              align: str) -> cf.Future[dict[str, Any]]:
        """Queue one pair's scoring as a task (the reference is put in the object store once for all its points)."""
        return self._track(self._score.remote(self._shared_ref(ref), deg, sr, metric_names, item, align))

    def _shared_ref(self, ref: np.ndarray) -> Any:
        """The object-store copy of a reference array, put on its first scoring (the array is held, so its id is)."""
        hit = self._shared.get(id(ref))
        if hit is not None and hit[0] is ref:
            self._shared.move_to_end(id(ref))
            return hit[1]
        self._shared[id(ref)] = (ref, self.ray.put(ref))
        while len(self._shared) > SHARED_REFS_MAX or (
                len(self._shared) > 1 and sum(a.nbytes for a, _ in self._shared.values()) > SHARED_REFS_MAX_BYTES):
            self._shared.popitem(last=False)
        return self._shared[id(ref)][1]

    def _track(self, object_ref: Any) -> cf.Future[Any]:
        """A concurrent future for an ObjectRef, which is kept (with the futures still pending) for cancelling."""
        fut: cf.Future[Any] = object_ref.future()
        self._pending = {f: r for f, r in self._pending.items() if not f.done()}
        self._pending[fut] = object_ref
        return fut

    def shutdown(self, *, cancel: bool = False) -> None:
        """Wait for (or cancel) the queued work, collect the actors' cache notes, stop the actors and our Ray."""
        if self._closed:
            return
        self._closed = True
        ray = self.ray
        try:
            if cancel:
                for object_ref in self._pending.values():
                    try:
                        ray.cancel(object_ref)
                    except Exception:  # noqa: BLE001 - already finished, or its worker is gone
                        pass
            else:
                cf.wait(list(self._pending))
                self._collect_cache_problems()
            for actor in self.actors.values():
                ray.kill(actor, no_restart=True)
        finally:
            self._pending.clear()
            self._shared.clear()
            self.actors.clear()
            if self.owns_ray:
                ray.shutdown()

    def _collect_cache_problems(self) -> None:
        """Add the damaged cache entries the actors found to the driver's cache notes (the run reports them)."""
        if self.cache is None:
            return
        for actor in self.actors.values():
            try:
                self.cache.problems.extend(self.ray.get(actor.cache_problems.remote(), timeout=30))
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to say
                continue

    def describe(self) -> dict[str, Any]:
        """The engine, workers, the address, the cluster's CPUs, GPUs and nodes, and where each codec ran."""
        return {"engine": self.name, "workers": self.workers, "address": self.address or "local",
                "cluster": dict(self.cluster), "codec_actors": {k: dict(v) for k, v in self.placement.items()}}
