"""Codecs behind one interface (see ``base.Codec``); each module registers itself in ``CODECS``."""
