"""Fixtures of the integration tests (beside those of ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import relos.dbos
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
