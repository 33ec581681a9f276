"""The application-version part of the SystemStore contract
(``register_application_version``, ``list_application_versions``,
``get_latest_application_version``, ``set_latest_application_version``) and
how the latest version decides who dequeues unversioned work: every guarantee
of their docstrings in ``relos/store/base.py``, on SQLite and on PostgreSQL.

Times are a fixed clock (``T0`` plus offsets) passed to the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relos.store.base import (
    ENQUEUED,
    PENDING,
    ApplicationVersion,
    QueueRow,
    SystemStore,
    WorkflowRow,
)

T0 = 1_700_000_000_000


def names(store: SystemStore) -> list[str]:
    return [v.version_name for v in store.list_application_versions()]


def queued(workflow_id: str, *, at: int = 0, version: str | None = None) -> WorkflowRow:
    return WorkflowRow(workflow_id=workflow_id, status=ENQUEUED, name="queued_wf",
                       executor_id="exec-a", created_at=T0 + at, updated_at=T0 + at,
                       inputs='{"args": [], "kwargs": {}}', queue_name="q",
                       application_version=version, recovery_attempts=0)


def dequeue(store: SystemStore, version: str, take_unversioned: bool) -> list[str]:
    rows = store.dequeue(QueueRow("q", updated_at=T0), f"owner-{version}", "exec-a", T0, 100,
                         version, ["queued_wf"], take_unversioned=take_unversioned)
    return [r.workflow_id for r in rows]


# --- register / list / get -----------------------------------------------------------------


def test_no_version_recorded(store: SystemStore) -> None:
    assert store.list_application_versions() == []
    assert store.get_latest_application_version() is None
    assert store.set_latest_application_version("v1", T0) is False
    assert store.list_application_versions() == []


def test_a_new_version_becomes_the_latest(store: SystemStore) -> None:
    store.register_application_version("v1", T0)
    assert store.list_application_versions() == [ApplicationVersion("v1", T0, T0)]
    store.register_application_version("v2", T0 + 10)
    assert store.list_application_versions() == [
        ApplicationVersion("v2", T0 + 10, T0 + 10), ApplicationVersion("v1", T0, T0)]
    assert store.get_latest_application_version() == ApplicationVersion("v2", T0 + 10, T0 + 10)


def test_a_known_version_registered_again_is_unchanged(store: SystemStore) -> None:
    store.register_application_version("v1", T0)
    store.register_application_version("v2", T0 + 10)
    store.register_application_version("v1", T0 + 20)  # an old executor restarts
    assert store.list_application_versions() == [
        ApplicationVersion("v2", T0 + 10, T0 + 10), ApplicationVersion("v1", T0, T0)]


def test_a_new_version_is_the_latest_even_when_the_clock_is_behind(store: SystemStore) -> None:
    store.register_application_version("v1", T0 + 500)
    store.register_application_version("v2", T0)  # a host whose clock is 500 ms behind
    assert store.list_application_versions() == [
        ApplicationVersion("v2", T0 + 501, T0), ApplicationVersion("v1", T0 + 500, T0 + 500)]


def test_same_timestamp_ties_are_broken_by_name(store: SystemStore, sql: Any) -> None:
    store.register_application_version("a", T0)
    store.register_application_version("b", T0 + 1)
    sql(store, "UPDATE {p}application_versions SET version_timestamp = ?", T0)
    assert names(store) == ["b", "a"]
    assert store.get_latest_application_version() == ApplicationVersion("b", T0, T0 + 1)


def test_concurrent_registrations_record_each_version_once(
    store: SystemStore, concurrently: Callable[[int, Callable[[int], Any]], list[Any]],
    rows_in: Any,
) -> None:
    concurrently(8, lambda i: store.register_application_version(f"v{i % 2}", T0 + i))
    assert sorted(names(store)) == ["v0", "v1"]
    assert rows_in(store, "application_versions") == 2


# --- set latest ----------------------------------------------------------------------------


def test_set_latest_moves_an_older_version_to_the_top(store: SystemStore) -> None:
    store.register_application_version("v1", T0)
    store.register_application_version("v2", T0 + 10)
    assert store.set_latest_application_version("v1", T0 + 100) is True
    assert store.list_application_versions() == [
        ApplicationVersion("v1", T0 + 100, T0), ApplicationVersion("v2", T0 + 10, T0 + 10)]
    # Relaunching v2 does not take it back: only a new version or set_latest does.
    store.register_application_version("v2", T0 + 200)
    assert names(store) == ["v1", "v2"]
    assert store.set_latest_application_version("v2", T0 + 300) is True
    assert names(store) == ["v2", "v1"]


def test_set_latest_wins_even_when_the_clock_is_behind(store: SystemStore) -> None:
    store.register_application_version("v1", T0)
    store.register_application_version("v2", T0 + 1000)
    assert store.set_latest_application_version("v1", T0 + 10) is True
    latest = store.get_latest_application_version()
    assert latest == ApplicationVersion("v1", T0 + 1001, T0)


def test_set_latest_of_an_unknown_version_changes_nothing(store: SystemStore) -> None:
    store.register_application_version("v1", T0)
    before = store.list_application_versions()
    assert store.set_latest_application_version("nope", T0 + 10) is False
    assert store.list_application_versions() == before


# --- dequeue: who takes unversioned work ---------------------------------------------------


def test_only_a_dequeuer_of_the_latest_version_takes_unversioned_work(
    store: SystemStore,
) -> None:
    store.enqueue([queued("any", at=0), queued("for-v1", at=1, version="v1"),
                   queued("for-v2", at=2, version="v2")])
    # Not the latest: only the work explicitly for its version.
    assert dequeue(store, "v1", take_unversioned=False) == ["for-v1"]
    assert dequeue(store, "v3", take_unversioned=False) == []
    # The latest: its own and the unversioned work, never another version's.
    assert dequeue(store, "v2", take_unversioned=True) == ["any", "for-v2"]


def test_dequeue_stamps_unversioned_work_with_the_dequeuers_version(
    store: SystemStore,
) -> None:
    store.enqueue([queued("any", at=0), queued("for-v2", at=1, version="v2")])
    assert dequeue(store, "v2", take_unversioned=True) == ["any", "for-v2"]
    for wid in ("any", "for-v2"):
        row = store.get_workflow(wid)
        assert row is not None
        assert (row.status, row.application_version) == (PENDING, "v2")
    # Requeued (its owner died), it keeps the version: only v2 takes it again.
    assert store.requeue("any", "owner-v2", T0 + 5)
    assert dequeue(store, "v3", take_unversioned=True) == []
    assert dequeue(store, "v2", take_unversioned=False) == ["any"]
