"""The throwaway database every benchmark runs on.

``database(backend)`` yields the URL of a fresh SQLite file in a new temporary
directory, or of a new PostgreSQL database on ``pg_base`` (default
``$RELOS_BENCH_POSTGRES_URL`` or the local server); both are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_BASE = os.environ.get("RELOS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def database(backend: str, pg_base: str = PG_BASE) -> Iterator[str]:
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
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_base}/{name}"
    finally:
        with psycopg.connect(f"{pg_base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
