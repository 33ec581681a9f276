"""When is an executor process alive? One rule, used by recovery and the CLI.

A stopped executor (``stopped_at`` set by a clean shutdown) is gone. One on
this host is dead as soon as its PID no longer exists. Otherwise it is alive
while its heartbeat is younger than the lease. Heartbeats are written in the
database's time and judged by it (``SystemStore.clock_ms``): callers pass
that clock as ``now_ms``.
"""

from __future__ import annotations

import os
import socket

from relos.store.base import ExecutorRow

HOSTNAME = socket.gethostname()


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def state(row: ExecutorRow, now_ms: int, lease_seconds: float) -> str:
    """``live``, ``stopped`` or ``dead``."""
    if row.stopped_at is not None:
        return "stopped"
    if row.hostname == HOSTNAME and not pid_exists(row.pid):
        return "dead"
    if now_ms - row.heartbeat_at >= lease_seconds * 1000:
        return "dead"
    return "live"
