"""The stable surface for plugins: everything a codec, metric or dataset from outside bench needs.

This is the stable public import: a plugin imports from here, not from bench's internal modules
(``bench.codecs.base`` and the like may move as the package is reorganised), and the names below
keep their meaning across releases. See ``docs/plugins.md`` for how a plugin is written and loaded.

* codecs: :class:`Codec` (subclass it), :class:`CodecSpec`, :class:`OperatingPoint`,
  :class:`Encoded`, :class:`BitstreamHeader`, :class:`BitstreamError`, :func:`register_codec`;
* metrics: :class:`MetricSpec`, :class:`MetricValue`, :func:`failed` (NaN with a reason),
  :class:`MetricError`, :func:`register_metric`;
* datasets: :class:`Dataset` (subclass it), :class:`Item`, :func:`register_dataset`;
* :class:`UserError`: raise it for a mistake in the user's input (one line, exit code 2).

Importing this module imports torch (the codec base class needs it); only plugins import it,
so ``bench --help`` stays fast.
"""

from __future__ import annotations

from bench.codecs.base import (
    BitstreamError,
    BitstreamHeader,
    Codec,
    CodecSpec,
    Encoded,
    OperatingPoint,
    register_codec,
)
from bench.datasets.base import Dataset, Item, register_dataset
from bench.errors import UserError
from bench.metrics.base import MetricError, MetricSpec, MetricValue, failed, register_metric

__all__ = [
    "BitstreamError",
    "BitstreamHeader",
    "Codec",
    "CodecSpec",
    "Dataset",
    "Encoded",
    "Item",
    "MetricError",
    "MetricSpec",
    "MetricValue",
    "OperatingPoint",
    "UserError",
    "failed",
    "register_codec",
    "register_dataset",
    "register_metric",
]
