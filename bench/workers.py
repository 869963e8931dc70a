"""Worker processes of the metric pools: one thread each, and gone when their parent is.

``bench run`` and ``bench score`` score in ``spawn`` process pools. If only the parent dies (the
kernel's OOM killer, ``kill -9``), a pool worker would wait on its queue forever; each worker
therefore watches its parent and exits as soon as it is gone.
"""

from __future__ import annotations

import os
import threading
import time

#: the thread-count variables of the numeric libraries a metric worker loads (OpenBLAS, MKL, OpenMP, Accelerate,
#: numexpr, numba); they are read when each library loads, so they must be in the environment the worker starts with
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


def one_thread_children() -> None:
    """Start every later child process (metric pools, a local Ray instance) with one BLAS/OpenMP thread.

    The workers share the cores: with numpy's default (one OpenBLAS thread per core in every worker) two
    workers on two cores ran four spinning BLAS threads and spent 104 s of CPU where 56 s did the same work
    (a cached opus/mp3 run scored by ``bench run --workers 2``). A variable the user set is kept. This process's
    own libraries are already loaded and keep their thread counts.
    """
    for name in THREAD_VARS:
        os.environ.setdefault(name, "1")


def init_metric_worker(parent_pid: int | None = None) -> None:
    """Pool initializer: torch on one thread (workers share the cores), and exit with ``parent_pid``."""
    import torch

    torch.set_num_threads(1)
    if parent_pid is not None:
        exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this process exit as soon as ``parent_pid`` dies (even by SIGKILL).

    A daemon thread polls the parent id: when the parent is gone the process is re-parented, so
    ``os.getppid()`` changes. (Linux's ``PR_SET_PDEATHSIG`` is not used: it fires when the
    *thread* that started the worker exits, which would kill healthy workers.)
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
