"""Workflow IDs made by relos (when the caller names none)."""

from __future__ import annotations

import os
import time


def new_ids(n: int) -> list[str]:
    """``n`` new workflow IDs: time-ordered UUIDs (version 7, RFC 9562): the
    creation millisecond, then a counter from a random start, then 62 random
    bits. IDs made together sort in the order they were made, and the indexes
    keyed by workflow ID take new entries at their right edge instead of on
    random pages (a million-row table outgrows the server's buffers)."""
    ms = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(2), "big") & 0x7FF
    raw = os.urandom(8 * n)
    ids = []
    for i in range(n):
        seq = start + i
        tail = int.from_bytes(raw[8 * i:8 * i + 8], "big") & _RAND_B | _VARIANT_BITS
        h = f"{ms + (seq >> 12):012x}7{seq & 0xFFF:03x}{tail:016x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


_RAND_B = (1 << 62) - 1
_VARIANT_BITS = 1 << 63  # the RFC variant, binary 10 in the top bits


def new_id() -> str:
    """One new workflow ID (see :func:`new_ids`)."""
    return new_ids(1)[0]
