"""The throwaway database every benchmark runs on.

``database(backend)`` yields the URL of a fresh SQLite file in a new temporary
directory, or of a new PostgreSQL database on ``pg_base`` (default
``$RELOS_BENCH_POSTGRES_URL`` or the local server); both are removed at the end.

``ServerCPU`` measures the CPU time the PostgreSQL server's processes spend
while it is open, when the server runs on this machine (read from ``/proc``):
a figure that depends less on what else the machine is doing than a rate.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PG_BASE = os.environ.get("RELOS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


#: ``--locale`` choices: CREATE DATABASE options for a database whose text
#: collation is a language's, as production databases often have.
LOCALES = {
    "default": "",
    "icu-en-US": "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
}


@contextmanager
def database(backend: str, pg_base: str = PG_BASE, locale: str = "default") -> Iterator[str]:
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="relos-bench-")
        try:
            yield f"sqlite:///{folder}/bench.sqlite"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    name = f"relos_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" {LOCALES[locale]}')
    try:
        yield f"{pg_base}/{name}"
    finally:
        with psycopg.connect(f"{pg_base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _server_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of every process of this machine named
    postgres, by process."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as f:
                stat = f.read()
        except OSError:  # (the process ended)
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")].startswith("postgres"):
            fields = stat[stat.rindex(")") + 2:].split()
            found[path] = (int(fields[11]) + int(fields[12])) / tick
    return found


class ServerCPU:
    """``with ServerCPU() as cpu: ...`` then ``cpu.seconds``: CPU time the local
    PostgreSQL server spent meanwhile (None when no server process is
    visible). Sampled every 0.2 s, so that the time of a connection closed
    before the end still counts."""

    def __enter__(self) -> ServerCPU:
        self._base = _server_cpu_seconds()
        self._seen = dict(self._base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.seconds: float | None = None
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._seen.update(_server_cpu_seconds())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._seen.update(_server_cpu_seconds())
        if self._seen:
            self.seconds = sum(v - self._base.get(k, 0.0) for k, v in self._seen.items())
