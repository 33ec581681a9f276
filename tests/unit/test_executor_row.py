"""Which queues an executor row says its process serves."""

from __future__ import annotations

from relos.store.base import ExecutorRow


def row(queues: str | None) -> ExecutorRow:
    return ExecutorRow("x", "local", None, "h", 1, 0, 0, queues=queues)


def test_none_serves_every_queue_and_a_list_its_names() -> None:
    assert row(None).serves("q")
    assert row('["q"]').serves("q") and not row('["q2"]').serves("q")
    assert not row("[]").serves("q")


def test_a_hand_written_value_that_is_no_list_counts_as_every_queue() -> None:
    """A ``queues`` value that is not a JSON array of names must not break
    the claims of the executors that read it (nor match by substring)."""
    assert row("not json").serves("q")
    assert row('"q2"').serves("q") and row('{"q": 1}').serves("other")
