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
    rnd = os.urandom(8 * n + 2).hex()  # 16 hex digits per ID, then the counter's start
    start = int(rnd[-4:], 16) & 0x7FF
    ids: list[str] = []
    add, variant = ids.append, _VARIANT
    high, head = -1, ""
    for i in range(n):
        seq = start + i
        if seq >> 12 != high:  # the counter carried into the time part
            high = seq >> 12
            t = f"{ms + high:012x}"
            head = f"{t[:8]}-{t[8:]}-7"
        r = rnd[16 * i:16 * i + 16]
        add(f"{head}{seq & 0xFFF:03x}-{variant[r[0]]}{r[1:4]}-{r[4:]}")
    return ids


#: The first hex digit of the last 64 bits: the RFC variant (binary 10) in
#: its top two bits, two random bits below.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_id() -> str:
    """One new workflow ID (see :func:`new_ids`)."""
    return new_ids(1)[0]
