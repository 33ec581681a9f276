"""The SQLite result code of an error, also where Python's sqlite3 does not
give it (before Python 3.11): a full disk or a held lock must be told from
the write's own fault on every supported Python."""

from __future__ import annotations

import sqlite3

import pytest

from relos.store.sqlite import _result_code


@pytest.mark.parametrize(("message", "code"), [
    ("database is locked", 5), ("database table is locked", 6),
    ("attempt to write a readonly database", 8), ("disk I/O error", 10),
    ("database or disk is full", 13), ("unable to open database file", 14),
    ("no such table: workflow_status", 0),
])
def test_the_code_is_read_from_the_message_when_the_error_has_none(message: str,
                                                                   code: int) -> None:
    exc = sqlite3.OperationalError(message)  # (made here: it carries no code)
    assert _result_code(exc) == code


def test_the_code_the_error_carries_wins() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA max_page_count = 2")  # (full at once)
        with pytest.raises(sqlite3.OperationalError) as info:
            conn.execute("INSERT INTO t SELECT zeroblob(10000)")
    finally:
        conn.close()
    assert _result_code(info.value) == 13
