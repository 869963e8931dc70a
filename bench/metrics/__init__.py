"""Metrics: one module per metric, each registering a :class:`~bench.metrics.base.MetricSpec`."""
