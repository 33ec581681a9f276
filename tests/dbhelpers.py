"""Helpers shared by the test suites (import as ``dbhelpers``): PostgreSQL
databases for tests, and polling with a deadline."""

from __future__ import annotations

import os
import time
import uuid
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


def new_postgres_database(options: str = "") -> str:
    """A new, empty database; ``options`` go to CREATE DATABASE (a locale, say)."""
    import psycopg

    name = f"relos_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" {options}')
    return name


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def eventually(check: Any, timeout: float = 10.0, interval: float = 0.02,
               what: str = "the condition") -> Any:
    """Poll ``check()`` until it returns something truthy (returned), failing
    the test after ``timeout`` seconds, saying ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def heard_exactly(heard: list[Any], expected: list[Any], timeout: float = 10.0,
                  quiet: float = 0.2) -> None:
    """Wait until ``heard`` (appended to by a listener's thread) holds as many
    items as ``expected``, then ``quiet`` seconds more, and assert that it
    holds exactly those, in any order; empty it for the next wait."""
    deadline = time.monotonic() + timeout
    while len(heard) < len(expected):
        assert time.monotonic() < deadline, f"heard {heard}, expected {expected}"
        time.sleep(0.01)
    time.sleep(quiet)  # (and nothing more)
    assert sorted(heard) == sorted(expected)
    heard.clear()


def event_history(sql: Any, store: Any, workflow_id: str, key: str) -> list[Any]:
    """The values of every workflow_events_history row of the event, in order
    (``sql`` is the contract tests' fixture: SQL with ``{p}`` and ``?``)."""
    rows = sql(store, "SELECT value FROM {p}workflow_events_history "
                      "WHERE workflow_id = ? AND key = ? ORDER BY id", workflow_id, key)
    return [r[0] for r in rows]


def status_history(sql: Any, store: Any, workflow_id: str) -> list[tuple[Any, ...]]:
    """(status, owner) of every workflow_status_history row of the workflow, in order
    (``sql`` is the contract tests' fixture)."""
    return sql(store, "SELECT status, owner FROM {p}workflow_status_history "
                      "WHERE workflow_id = ? ORDER BY id", workflow_id)


def cut_connections(url: str, times: int, every: float,
                    after_each: Any = None) -> int:
    """End every server process of the PostgreSQL database at ``url`` (as a
    restart or fail-over does to its clients), ``times`` times, ``every``
    seconds apart, calling ``after_each()`` after each cut; how many ended."""
    import psycopg

    base, database = url.rsplit("/", 1)
    ended = 0
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        for _ in range(times):
            time.sleep(every)
            ended += admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
            if after_each is not None:
                after_each()
    return ended
