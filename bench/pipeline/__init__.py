"""The pipeline: prepare references, code them through the cache, score, write typed rows.

* ``code``: prepare a reference (load, channel policy, loudness) and code it at one operating point.
* ``scoring``: one pair of signals against a list of metrics (alignment, length and rate policy).
* ``engine``: where scoring runs (a process pool whose workers exit with their parent, or inline).
* ``identity``: what resume is keyed by (value settings, item/codec/metric fingerprints).
* ``run``: ``run_benchmark``, the loop over items and operating points.

Submodules are imported on use; ``from bench.pipeline.run import run_benchmark``.
"""
