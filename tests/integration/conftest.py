"""Fixtures of the integration tests (beside those of ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import relos.dbos
from relos import DBOS
from relos.store import SystemStore, open_store


@pytest.fixture
def raw_store(db_url: str) -> Iterator[SystemStore]:
    """The test's own connection to the database (migrated by the launch)."""
    store = open_store(db_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def no_listen_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start and end the test with no DBOS.listen_queues filter in force."""
    monkeypatch.setattr(relos.dbos, "_listen", None)


@pytest.fixture
def launch(db_url: str) -> Iterator[Callable[..., Any]]:
    """``launch(**config)``: launch relos on the test database with this config
    (a short lease and frequent recovery passes unless it says otherwise);
    destroyed after the test."""

    def start(**config: Any) -> Any:
        DBOS.destroy()
        DBOS(config={"system_database_url": db_url, "executor_lease_seconds": 2,
                     "recovery_interval_seconds": 0.5, **config})
        DBOS.launch()
        return DBOS

    try:
        yield start
    finally:
        DBOS.destroy()
