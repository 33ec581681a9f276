"""Shared fixtures: every database test runs on both backends.

``db_url`` is parametrised over a fresh SQLite file and a fresh PostgreSQL
database (created and dropped per test). Without a reachable PostgreSQL the
postgres cases are skipped with a loud reason, unless RELOS_REQUIRE_POSTGRES=1,
in which case they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dbhelpers import PG_BASE, drop_postgres_database, new_postgres_database, require_postgres


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
