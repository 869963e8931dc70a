"""bench: a benchmark and evaluation harness for neural audio codecs."""

__version__ = "0.1.0"
