"""Which named statements only read (a read that lost its connection runs
again on another; a write never does: it may have committed)."""

from __future__ import annotations

import pytest

from relos.store.sql import load_statements


@pytest.mark.parametrize("backend,marker", [("postgres", "%s"), ("sqlite", "?")])
def test_only_plain_selects_are_reads(backend: str, marker: str) -> None:
    st = load_statements(backend, "", marker)
    reads = {name for name, s in st.items() if s.reads}
    assert {"get_workflow", "load_steps", "get_event", "get_queue"} <= reads
    for name in reads:
        first = st[name].sql.split(None, 1)[0].upper()
        assert first == "SELECT", name
    writes = {name for name, s in st.items()
              if s.sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "WITH")}
    assert writes and not writes & reads
    if backend == "postgres":  # (a SELECT ... FOR NO KEY UPDATE takes a lock)
        assert "lock_workflow" not in reads
