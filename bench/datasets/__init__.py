"""Datasets: one module per corpus, each registering a :class:`~bench.datasets.base.Dataset`."""
