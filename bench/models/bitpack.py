"""Fixed-width packing of integer codes into bytes (shared by the RVQ codecs' bitstreams).

Codes are written most significant bit first, in C order of the array, and the last byte is
zero-padded. A stream of ``count`` codes of ``bits`` bits takes exactly ``ceil(count*bits/8)`` bytes.
"""

from __future__ import annotations

import math

import numpy as np


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` codes of ``bits`` bits each, the last byte zero-padded."""
    return math.ceil(count * bits / 8)


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers ``< 2**bits`` (any shape, C order) into bytes."""
    flat = np.asarray(codes, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"codes must be in 0..{(1 << bits) - 1} to pack in {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_array = ((flat[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bit_array).tobytes()


def unpack_codes(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` codes as int64. ``data`` must be exactly the right size."""
    expected = packed_size(count, bits)
    if len(data) != expected:
        raise ValueError(f"expected {expected} bytes for {count} codes of {bits} bits, got {len(data)}")
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return bit_array.reshape(count, bits).astype(np.int64) @ weights
