"""Layers shared by the in-repo neural codecs."""
