"""The one module that imports cramjam: snappy block compression for remote-write bodies.

Remote write 1.0 wants the snappy *block* format (no framing), which cramjam calls `compress_raw`.
cramjam is chosen over python-snappy because it ships self-contained wheels (no libsnappy to install)
and python-snappy 0.7 is itself a thin wrapper over cramjam.
"""
from __future__ import annotations

import cramjam


def compress(data: bytes) -> bytes:
    """`data` in the snappy block format."""
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(data: bytes) -> bytes:
    """The inverse of `compress` (for tests and the bench); raises on a damaged block."""
    return bytes(cramjam.snappy.decompress_raw(data))
