"""Peak memory of each codec, measured where it runs (issue: one process-wide figure said nothing per codec).

What a codec's "peak memory MB" means, per device:

* **CUDA**: bytes the codec's model holds after ``load`` (``torch.cuda.memory_allocated`` after minus before)
  plus the largest rise of ``torch.cuda.max_memory_allocated`` above the allocation at the start of one
  of its coding jobs (the peak statistics are reset before each job). Exact for torch allocations; the
  caching allocator's reserve and CUDA context are not counted.
* **CPU**: the rise of the process's resident set size (``/proc/self/statm``) during ``load`` plus the
  largest rise above the job's starting RSS while one of its jobs runs, sampled every
  :data:`SAMPLE_INTERVAL_S` by a thread. Memory freed by an earlier job and kept by the allocator is
  reused without raising RSS, so a later job can read lower; the figure is the maximum over jobs, and
  anything else the process does while the job runs (other threads' allocations) counts too. Where
  ``/proc`` is missing (not Linux) the figure is not measured (None) rather than guessed.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: 20 ms: a 5 ms sampler took the GIL 200 times a second from the coding thread (about 10 % of the driver's
#: CPU in a py-spy profile of an opus/mp3 run)
SAMPLE_INTERVAL_S = 0.02
CPU_KIND = "CPU: RSS rise at load + peak RSS rise during a coding job (sampled every 20 ms)"
CUDA_KIND = "CUDA: torch allocation of the loaded model + peak allocation rise during a coding job"
LOAD_ATTR = "_bench_load_memory_mb"


def rss_mb() -> float | None:
    """The resident set size of this process in MiB from ``/proc/self/statm``, or None where unreadable."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cuda_device(device: Any) -> Any:
    """The torch CUDA device of ``device`` (a str, torch.device or None), or None when it is not CUDA."""
    import torch

    dev = torch.device(device) if device is not None else None
    return dev if dev is not None and dev.type == "cuda" and torch.cuda.is_available() else None


@contextmanager
def measure_load(codec: Any, device: Any) -> Iterator[None]:
    """Record on ``codec`` the memory its ``load`` took (MiB; None when not measurable)."""
    cuda = _cuda_device(device)
    before = _allocated_mb(cuda) if cuda is not None else rss_mb()
    yield
    after = _allocated_mb(cuda) if cuda is not None else rss_mb()
    load_mb = max(0.0, after - before) if before is not None and after is not None else None
    try:
        setattr(codec, LOAD_ATTR, load_mb)
    except AttributeError:  # a codec with __slots__: the job figure alone is reported
        pass


def _allocated_mb(cuda: Any) -> float:
    import torch

    return torch.cuda.memory_allocated(cuda) / 2**20


class _RssSampler:
    """A thread that records the highest RSS seen until stopped."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            now = rss_mb()
            if now is not None and (self.peak is None or now > self.peak):
                self.peak = now

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        now = rss_mb()
        if now is not None and (self.peak is None or now > self.peak):
            self.peak = now


@contextmanager
def measure_job(codec: Any, out: dict[str, Any]) -> Iterator[None]:
    """Fill ``out`` with ``peak_memory_mb`` (load + this job's peak rise) and ``memory_kind`` for one coding job."""
    cuda = _cuda_device(getattr(codec, "device", None))
    if cuda is not None:
        import torch

        start = _allocated_mb(cuda)
        torch.cuda.reset_peak_memory_stats(cuda)
        yield
        rise: float | None = max(0.0, torch.cuda.max_memory_allocated(cuda) / 2**20 - start)
        kind = CUDA_KIND
    else:
        start_rss = rss_mb()
        with _RssSampler() as sampler:
            yield
        rise = (max(0.0, sampler.peak - start_rss) if start_rss is not None and sampler.peak is not None else None)
        kind = CPU_KIND
    load = getattr(codec, LOAD_ATTR, None)
    out["peak_memory_mb"] = None if rise is None else rise + (load or 0.0)
    out["memory_kind"] = kind if load is not None else kind + " (load not measured)"
