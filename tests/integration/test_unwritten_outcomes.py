"""A workflow whose outcome the database would not take is not left behind.

The database refuses every write that makes a workflow SUCCESS (a trigger the
test installs and later drops, on both backends) while workflows finish: their
rows stay PENDING under the live process that ran them, which no recovery
elsewhere touches. Once the database takes writes again, that same process
reruns them from their recorded steps and records their outcome.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from dbhelpers import eventually
from relos import DBOS, PENDING, SUCCESS, Queue, SetWorkflowID

runs: Counter[str] = Counter()
refusing_queue = Queue("unwritten.queue")


@DBOS.step()
def unwritten_step(tag: str) -> str:
    runs[f"step:{tag}"] += 1
    return f"step-{tag}"


@DBOS.workflow()
def unwritten_wf(tag: str) -> str:
    runs[tag] += 1
    return unwritten_step(tag) + "-done"


def _store() -> Any:
    from relos import dbos as facade

    assert facade._runtime is not None
    return facade._runtime.store


def _refuse_success(refuse: bool) -> None:
    """Make the database refuse (or take again) writes that finish a workflow."""
    store = _store()
    p = store.prefix
    if store.backend == "postgres":
        statements = [
            f"CREATE FUNCTION {p}refuse_success() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF NEW.status = 'SUCCESS' THEN RAISE EXCEPTION 'refused by the test'; "
            f"END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER refuse_success BEFORE UPDATE ON {p}workflow_status "
            f"FOR EACH ROW EXECUTE FUNCTION {p}refuse_success()",
        ] if refuse else [
            f"DROP TRIGGER refuse_success ON {p}workflow_status",
            f"DROP FUNCTION {p}refuse_success()",
        ]
    else:
        statements = [
            "CREATE TRIGGER refuse_success BEFORE UPDATE OF status ON workflow_status "
            "WHEN NEW.status = 'SUCCESS' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ] if refuse else ["DROP TRIGGER refuse_success"]
    with store._tx() as conn:
        for sql in statements:
            conn.execute(sql)


def _status(workflow_id: str) -> str:
    row = _store().get_workflow(workflow_id)
    assert row is not None
    return str(row.status)


def test_a_workflow_whose_success_was_refused_is_finished_by_the_same_process(
        dbos: Any) -> None:
    tag = uuid.uuid4().hex
    wid = f"unwritten-{tag}"
    _refuse_success(True)
    with SetWorkflowID(wid), pytest.raises(Exception, match="refused by the test"):
        unwritten_wf(tag)
    assert runs[tag] >= 1
    assert _status(wid) == PENDING  # still: its outcome is not recorded
    _refuse_success(False)
    eventually(lambda: _status(wid) == SUCCESS, timeout=20)
    assert DBOS.retrieve_workflow(wid).get_result() == f"step-{tag}-done"
    assert runs[tag] >= 2  # rerun here: nothing else would have finished it


def test_queued_workflows_whose_success_was_refused_all_finish(dbos: Any) -> None:
    tags = [uuid.uuid4().hex for _ in range(30)]
    _refuse_success(True)
    handles = refusing_queue.enqueue_many(unwritten_wf, [(t,) for t in tags])
    eventually(lambda: all(runs[t] >= 1 for t in tags), timeout=20)
    assert all(_status(h.workflow_id) != SUCCESS for h in handles)
    _refuse_success(False)
    for h, t in zip(handles, tags, strict=True):
        assert h.get_result(timeout_seconds=30) == f"step-{t}-done"
        assert _status(h.workflow_id) == SUCCESS
