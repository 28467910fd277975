"""Key ranges in etcd's terms: a prefix becomes ``[key, range_end)``.

etcd addresses "every key starting with P" as the half-open range from P to the smallest key
greater than all of them: P with its last byte below 0xFF incremented and the rest cut off.
"""

from __future__ import annotations


def prefix_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range that holds every key starting with ``prefix``."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # no upper bound (etcd's "every key from key on")
