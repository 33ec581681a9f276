"""Shared fixtures: every database test runs on both backends.

``db_url`` is parametrised over a fresh SQLite file and a fresh PostgreSQL
database (created and dropped per test). Without a reachable PostgreSQL the
postgres cases are skipped with a loud reason, unless RELOS_REQUIRE_POSTGRES=1,
in which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PG_BASE = os.environ.get("RELOS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
_pg_state: dict[str, Any] = {}


def postgres_error() -> str | None:
    """None when the test PostgreSQL server answers, else why not."""
    if "error" not in _pg_state:
        try:
            import psycopg

            psycopg.connect(f"{PG_BASE}/postgres", connect_timeout=3).close()
            _pg_state["error"] = None
        except Exception as exc:  # any failure means: no server for the tests
            _pg_state["error"] = f"{type(exc).__name__}: {exc}"
    err: str | None = _pg_state["error"]
    return err


def require_postgres() -> None:
    err = postgres_error()
    if err is None:
        return
    msg = f"PostgreSQL at {PG_BASE} is not reachable ({err})"
    if os.environ.get("RELOS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{msg} and RELOS_REQUIRE_POSTGRES=1", pytrace=False)
    pytest.skip(f"!!! SKIPPING POSTGRES TEST: {msg}; start it or set RELOS_TEST_POSTGRES_URL")


def new_postgres_database() -> str:
    import psycopg

    name = f"relos_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres()
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Any) -> Iterator[str]:
    """A URL to an empty database of the backend under test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/relos.sqlite"
        return
    name = new_postgres_database()
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        drop_postgres_database(name)


@pytest.fixture
def dbos(db_url: str) -> Iterator[Any]:
    """A launched relos runtime on a fresh database; destroyed after the test."""
    from relos import DBOS

    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5})
    DBOS.launch()
    try:
        yield DBOS
    finally:
        DBOS.destroy()
