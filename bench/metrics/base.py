"""The Metric interface.

A metric is a plain function ``fn(preds, target, *, sample_rate_hz, **options)`` where ``preds`` and
``target`` are float tensors ``[B, T]`` (mono, already at ``spec.sample_rate_hz``, equal length).
It returns one value per item: either a tensor/array of shape ``[B]`` or a list of
:class:`MetricValue` (value plus a failure reason and extras). A failed item is NaN with a reason:
never 0, never dropped. Raising :class:`MetricError` fails the whole batch with that reason.

Per-item context that some metrics need (the transcript for WER, the domain for ViSQOL's mode)
arrives through the keyword ``items``: a list of :class:`~bench.datasets.base.Item` or None.

:func:`compute` times each call (``time.perf_counter``; on CUDA inputs the device is synchronised
before and after, so queued kernels count) and gives every value of the batch the call's seconds
divided by the batch size (``MetricValue.compute_s``): the cost of one item, whatever batch it ran in.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from bench.metrics import DEFAULT_METRICS
from bench.registry import METRICS
from bench.types import DOMAINS


class MetricError(RuntimeError):
    """An item (or batch) that the metric cannot score; the message is the recorded reason."""


@dataclass
class MetricValue:
    """One item's score: the value, the failure reason (None when scored) and metric-specific extras."""

    value: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    compute_s: float | None = None  # seconds of the metric call per item (batch time / batch size)

    @property
    def ok(self) -> bool:
        """True when the item was scored: no failure reason and a finite value."""
        return self.error is None and math.isfinite(self.value)


def failed(reason: str, **extra: Any) -> MetricValue:
    """A failed item: NaN with ``reason`` (never 0, so a failure cannot pass for a score)."""
    return MetricValue(float("nan"), reason, dict(extra))


@dataclass
class MetricSpec:
    """Static description of a metric; the runner uses it to resample, filter and report."""

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    unit: str
    sample_rate_hz: int | None  # native rate; None = any (runs at the item's rate)
    needs_reference: bool = True
    valid_range: tuple[float, float] = (-math.inf, math.inf)
    domains: tuple[str, ...] = DOMAINS
    needs_transcript: bool = False
    version: str = "1"
    source: str = ""
    description: str = ""
    min_duration_s: float = 0.0
    requires: tuple[str, ...] = ()  # pip packages the backend needs
    batched: bool = True  # can take B > 1 in one call
    default: bool = True  # part of the default metric set of ``bench run``
    on_device: bool = False  # pure torch: runs on the scoring device, batched over one reference's reconstructions
    #: model-backed metrics: () -> {"model", "weights_sha256", ...} or {"model", "error"} (bench.metrics._models);
    #: part of the fingerprint (other weights never resume as these) and of the run manifest
    model_info: Callable[[], dict[str, Any]] | None = None
    #: the name tables and figure titles show ("WER (Whisper large-v3)"); empty = derived from ``name``
    display_name: str = ""
    #: one value per set of items (FAD: references vs reconstructions of one codec point), not per item;
    #: the per-item scoring path skips it and bench.pipeline's set-level pass computes it
    set_level: bool = False

    def applies_to(self, domain: str | None, has_transcript: bool = False) -> tuple[bool, str]:
        """Whether the metric applies to an item; (False, reason) when not."""
        if domain is not None and domain not in self.domains:
            return False, f"{self.name} applies to {'/'.join(self.domains)} only, item is {domain}"
        if self.needs_transcript and not has_transcript:
            return False, f"{self.name} needs a transcript and the item has none"
        return True, ""


#: harness modules between the pair of signals and the metric function (alignment, resampling,
#: the call wrapper): their code decides every metric's values too
SCORING_MODULES = ("bench.pipeline.scoring", "bench.metrics.base", "bench.audio")


def describe_model(spec: MetricSpec) -> dict[str, Any] | None:
    """The spec's ``model_info()`` (weights source and hash), None for metrics without a model; never raises."""
    if spec.model_info is None:
        return None
    try:
        return dict(spec.model_info())
    except Exception as exc:  # noqa: BLE001 - provenance must not stop a run; the metric reports its own failure
        return {"error": f"{type(exc).__name__}: {exc}"}


def metric_fingerprint(spec: MetricSpec) -> str:
    """Hash of what decides a metric's values: name, version, code, the scoring path's, backends and weights.

    Resume discards a run's rows of a metric whose fingerprint changed, so a value computed by
    other code or another backend release is never kept beside new ones. Docstrings and comments
    do not count (see ``bench.fingerprint``).
    """
    from bench.fingerprint import digest, package_versions, source_fingerprint

    modules = {getattr(spec.fn, "__module__", None) or "bench.metrics.base", *SCORING_MODULES}
    fields: dict[str, Any] = {"name": spec.name, "version": spec.version, "code": source_fingerprint(modules),
                              "packages": package_versions(spec.requires)}
    model = describe_model(spec)
    if model is not None:  # the weights' hash (or why there are none): other weights are another metric
        fields["model"] = {k: v for k, v in model.items() if k != "folder"}
    return digest(fields, length=24)


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to the metric registry under its name and return it; each metric module calls it at import."""
    return METRICS.register(spec.name, spec)


def get_metric(name: str) -> MetricSpec:
    """The registered spec called ``name``; the registry raises with close matches when unknown."""
    return METRICS.get(name)


def as_values(raw: Any, batch_size: int) -> list[MetricValue]:
    """Normalise a metric function's return value to ``batch_size`` MetricValues."""
    if isinstance(raw, MetricValue):
        raw = [raw]
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().double().cpu().reshape(-1).numpy()
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1).tolist()
    if isinstance(raw, (int, float)):
        raw = [raw]
    values = [v if isinstance(v, MetricValue) else MetricValue(float(v)) for v in raw]
    if len(values) != batch_size:
        raise MetricError(f"metric returned {len(values)} values for {batch_size} items")
    for v in values:
        if v.error is None and not math.isfinite(v.value):
            v.error = "metric returned a non-finite value"
            v.value = float("nan")
    return values


def compute(spec: MetricSpec, preds: torch.Tensor, target: torch.Tensor, *,
            items: Sequence[Any] | None = None, sample_rate_hz: int | None = None,
            **options: Any) -> list[MetricValue]:
    """Call a metric safely: any exception becomes NaN + reason for the whole batch.

    ``sample_rate_hz`` is the rate of ``preds``/``target``; it is required for metrics whose spec says
    ``sample_rate_hz=None`` (they run at the item's rate and need to know it), and must equal the
    spec's native rate otherwise.
    """
    batch = preds.shape[0]
    if spec.sample_rate_hz is not None and sample_rate_hz is not None and sample_rate_hz != spec.sample_rate_hz:
        return [failed(f"{spec.name} runs at {spec.sample_rate_hz} Hz, got audio at {sample_rate_hz} Hz")
                for _ in range(batch)]
    rate = spec.sample_rate_hz if spec.sample_rate_hz is not None else sample_rate_hz
    cuda = _on_cuda(preds, target)
    start = _clock(cuda)
    try:
        values = as_values(spec.fn(preds, target, sample_rate_hz=rate, items=items, **options), batch)
    except MetricError as exc:
        values = [failed(str(exc)) for _ in range(batch)]
    except Exception as exc:  # noqa: BLE001 - a backend crash must not stop the run
        values = [failed(f"{type(exc).__name__}: {exc}") for _ in range(batch)]
    per_item_s = (_clock(cuda) - start) / max(1, batch)
    for v in values:
        v.compute_s = per_item_s
    return values


def _on_cuda(*tensors: Any) -> bool:
    """Whether any of ``tensors`` is a CUDA tensor (its kernels run asynchronously)."""
    return any(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors)


def _clock(cuda: bool) -> float:
    """``time.perf_counter()``, after waiting for the CUDA queue when ``cuda`` (so its kernels are timed)."""
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def select_metrics(spec: str | None, *, say: Callable[[str], None] | None = None) -> list[MetricSpec]:
    """Parse ``--metrics``: None or 'default' (DEFAULT_METRICS), 'all', or comma-separated names.

    A metric named explicitly whose backend is not installed is a one-line error naming the extra
    that installs it; 'default' and 'all' leave such metrics out and ``say`` why.
    """
    from bench.deps import install_hint, missing, require

    if spec is None or spec in ("default", "all"):
        names = DEFAULT_METRICS if spec != "all" else METRICS.names()
        chosen = [METRICS.get(n) for n in names if n in METRICS]
        absent = {m.name: missing(m.requires) for m in chosen}
        left_out = [n for n, pkgs in absent.items() if pkgs]
        if left_out and say is not None:
            pkgs = sorted({p for n in left_out for p in absent[n]})
            say(f"note: leaving out {', '.join(left_out)} (not installed: {install_hint(pkgs)})")
        return [m for m in chosen if not absent[m.name]]
    chosen = [METRICS.get(n.strip()) for n in spec.split(",") if n.strip()]
    for m in chosen:
        require(m.requires, f"metric {m.name!r}")
    return chosen
