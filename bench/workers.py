"""Worker processes of the metric pools: one thread each, and gone when their parent is.

``bench run`` and ``bench score`` score in ``spawn`` process pools. If only the parent dies (the
kernel's OOM killer, ``kill -9``), a pool worker would wait on its queue forever; each worker
therefore watches its parent and exits as soon as it is gone.
"""

from __future__ import annotations

import os
import threading
import time


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
