"""The ``relos`` command line, run for real in subprocesses, on both backends.

Workflows for the CLI to inspect are run in this process with the ``dbos``
fixture (a runtime launched on ``db_url``, executor ID "local", recovering
every half second), so a workflow resumed or forked by the CLI is picked up
here. The CLI itself never imports this module: it reads the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbhelpers import eventually
from relos import DBOS, Queue, SetWorkflowID, queues
from relos.errors import AwaitedWorkflowCancelledError
from relos.store import migrations

CALLS: dict[str, int] = {}
FIXED: set[str] = set()


@dataclasses.dataclass
class Point:
    x: int
    y: int


@DBOS.step(name="cli_test.count")
def count(tag: str) -> int:
    CALLS[tag] = CALLS.get(tag, 0) + 1
    return CALLS[tag]


@DBOS.workflow(name="cli_test.greet")
def greet(who: str) -> str:
    count(f"greet:{who}")
    return f"hello {who}"


@DBOS.workflow(name="cli_test.waiter")
def waiter() -> str:
    message = DBOS.recv("go", timeout_seconds=120)
    return f"got {message}"


@DBOS.workflow(name="cli_test.flaky")
def flaky(tag: str) -> str:
    count(tag)
    if tag not in FIXED:
        raise RuntimeError(f"flaky failure {tag}")
    return "fixed"


@DBOS.workflow(name="cli_test.make_point")
def make_point(x: int) -> Point:
    return Point(x, x + 1)


@DBOS.workflow(name="cli_test.two_steps")
def two_steps(tag: str) -> list[int]:
    a = count(f"{tag}:a")
    DBOS.sleep(0.01)
    b = count(f"{tag}:b")
    return [a, b]


# --- helpers -------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m relos.cli ARGS`` and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k != "RELOS_SYSTEM_DATABASE_URL"}
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "relos.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd)


def ok(*args: str, **kwargs: Any) -> str:
    r = cli(*args, **kwargs)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def ok_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


def fails(*args: str, **kwargs: Any) -> str:
    """Run a command that must fail with one clear error line; return that line."""
    r = cli(*args, **kwargs)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    return eventually(predicate, timeout, 0.05, what)


def run(func: Callable[..., Any], workflow_id: str, *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return func(*args)


def start(func: Callable[..., Any], workflow_id: str, *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return DBOS.start_workflow(func, *args)


def blocked_in_recv(workflow_id: str) -> bool:
    """True once the workflow waits in DBOS.recv (its timeout is recorded then)."""
    return any(s["function_name"] == "DBOS.sleep" for s in DBOS.list_workflow_steps(workflow_id))


def status_of(db_url: str, workflow_id: str) -> str:
    return str(ok_json("workflow", "get", workflow_id, "--database-url", db_url)["status"])


# --- migrate -------------------------------------------------------------------------------


def test_migrate_applies_then_reports_up_to_date(db_url: str, backend: str) -> None:
    latest = migrations.latest(backend)
    first = " ".join(ok("migrate", "--database-url", db_url).split())  # (as one line:
    # the console wraps its text at the terminal's width, 80 columns without one)
    assert "applied migrations " + ", ".join(map(str, range(1, latest + 1))) in first
    assert f"version {latest}" in first
    second = " ".join(ok("migrate", "--database-url", db_url).split())
    assert "up to date" in second and f"version {latest}" in second
    data = ok_json("migrate", "--database-url", db_url)
    assert data["applied"] == [] and data["version"] == latest


# --- list ----------------------------------------------------------------------------------


def test_list_by_queue(dbos: Any, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues, "_queues", dict(queues.registered()))  # (defined here only)
    cli_queue = Queue("cli_q")
    with SetWorkflowID("q-ada"):
        assert cli_queue.enqueue(greet, "ada").get_result() == "hello ada"
    assert run(greet, "g-bob", "bob") == "hello bob"
    url = ("--database-url", db_url)
    rows = ok_json("workflow", "list", *url, "--queue", "cli_q")
    assert [(r["workflow_id"], r["queue_name"]) for r in rows] == [("q-ada", "cli_q")]
    assert ok_json("workflow", "list", *url, "--queue", "no such queue") == []
    assert "q-ada" in ok("workflow", "list", *url, "--queue", "cli_q")


def test_list_table_json_and_filters(dbos: Any, db_url: str) -> None:
    for who in ("ada", "bob", "cy"):
        assert run(greet, f"g-{who}", who) == f"hello {who}"
    with pytest.raises(RuntimeError, match="flaky failure"):
        run(flaky, "f-1", f"list-{uuid.uuid4().hex}")
    start(waiter, "w-1")
    url = ("--database-url", db_url)

    table = ok("workflow", "list", *url)
    for wid in ("g-ada", "g-bob", "g-cy", "f-1", "w-1"):
        assert wid in table
    for text in ("cli_test.greet", "cli_test.flaky", "SUCCESS", "ERROR", "PENDING", "local"):
        assert text in table

    rows = ok_json("workflow", "list", *url)
    assert {r["workflow_id"] for r in rows} == {"g-ada", "g-bob", "g-cy", "f-1", "w-1"}
    newest_first = sorted(rows, key=lambda r: (r["created_at"], r["workflow_id"]), reverse=True)
    assert [r["workflow_id"] for r in rows] == [r["workflow_id"] for r in newest_first]
    asc = ok_json("workflow", "list", *url, "--sort", "asc")
    assert [r["workflow_id"] for r in asc] == [r["workflow_id"] for r in reversed(rows)]

    by_id = {r["workflow_id"]: r for r in rows}
    ada = by_id["g-ada"]
    assert ada["status"] == "SUCCESS" and ada["name"] == "cli_test.greet"
    assert ada["inputs"] == {"args": ["ada"], "kwargs": {}}
    assert ada["output"] == "hello ada" and ada["error"] is None
    assert isinstance(ada["created_at"], int) and isinstance(ada["completed_at"], int)
    assert ada["executor_id"] == "local" and ada["recovery_attempts"] == 1
    failed = by_id["f-1"]
    assert failed["status"] == "ERROR" and failed["output"] is None
    assert failed["error"]["type"] == "builtins:RuntimeError"
    assert failed["error"]["message"].startswith("flaky failure")
    assert by_id["w-1"]["status"] == "PENDING"

    def ids(*args: str) -> list[str]:
        return sorted(r["workflow_id"] for r in ok_json("workflow", "list", *url, *args))

    assert ids("--status", "ERROR") == ["f-1"]
    assert ids("--status", "success", "--status", "PENDING") == ["g-ada", "g-bob", "g-cy", "w-1"]
    assert ids("--name", "cli_test.greet") == ["g-ada", "g-bob", "g-cy"]
    assert ids("--name", "cli_test.greet", "--status", "ERROR") == []
    assert len(ids("--limit", "2")) == 2
    assert len(ids("--limit", "2", "--offset", "4")) == 1
    assert ids("--since", "2999-01-01T00:00:00") == []
    assert ids("--until", "2000-01-01T00:00:00+00:00") == []
    assert len(ids("--since", "2000-01-01T00:00:00Z")) == 5

    # The URL can also come before the command, or from the environment.
    assert "g-ada" in ok("--database-url", db_url, "workflow", "list")
    assert "g-ada" in ok("workflow", "list", env={"RELOS_SYSTEM_DATABASE_URL": db_url})

    r = cli("workflow", "list", *url, "--status", "BOGUS")
    assert r.returncode == 2 and "BOGUS" in r.stderr
    r = cli("workflow", "list", *url, "--since", "yesterday")
    assert r.returncode == 2 and "ISO 8601" in r.stderr


# --- get and steps -------------------------------------------------------------------------


def test_piped_tables_keep_each_row_on_one_line(dbos: Any, db_url: str) -> None:
    """Written to a pipe with no COLUMNS set (``relos workflow list | grep``),
    a table is not cut at 80 columns: a long ID stays whole on its row."""
    wid = f"piped-{uuid.uuid4().hex}-{uuid.uuid4().hex}"
    run(greet, wid, "pipe")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RELOS_SYSTEM_DATABASE_URL", "COLUMNS")}
    out = subprocess.run([sys.executable, "-m", "relos.cli", "workflow", "list",
                          "--database-url", db_url], capture_output=True, text=True,
                         timeout=60, env=env, check=True).stdout
    [line] = [ln for ln in out.splitlines() if wid in ln]
    assert "cli_test.greet" in line and "SUCCESS" in line


def test_get_and_steps(dbos: Any, db_url: str) -> None:
    tag = f"gs-{uuid.uuid4().hex}"
    assert run(two_steps, "gs-1", tag) == [1, 1]
    url = ("--database-url", db_url)

    shown = ok("workflow", "get", "gs-1", *url)
    for text in ("gs-1", "cli_test.two_steps", "SUCCESS", "[1, 1]", tag, "Steps recorded"):
        assert text in shown
    data = ok_json("workflow", "get", "gs-1", *url)
    assert data["workflow_id"] == "gs-1" and data["status"] == "SUCCESS"
    assert data["output"] == [1, 1] and data["inputs"] == {"args": [tag], "kwargs": {}}

    table = ok("workflow", "steps", "gs-1", *url)
    for text in ("cli_test.count", "DBOS.sleep", "wakes up at", "Duration"):
        assert text in table
    steps = ok_json("workflow", "steps", "gs-1", *url)
    assert [s["function_id"] for s in steps] == [0, 1, 2]
    assert [s["function_name"] for s in steps] == ["cli_test.count", "DBOS.sleep",
                                                    "cli_test.count"]
    assert steps[0]["output"] == 1 and steps[2]["output"] == 1
    sleep = steps[1]
    assert sleep["wake_up_at_epoch_ms"] >= sleep["started_at_epoch_ms"] + 10
    for s in steps:
        assert s["duration_ms"] == s["completed_at_epoch_ms"] - s["started_at_epoch_ms"] >= 0


def test_steps_show_recorded_errors(dbos: Any, db_url: str) -> None:
    @DBOS.step(name="cli_test.broken_step")
    def broken() -> None:
        raise ValueError("step went wrong")

    @DBOS.workflow(name="cli_test.with_broken_step")
    def with_broken_step() -> None:
        broken()

    with pytest.raises(ValueError):
        run(with_broken_step, "bs-1")
    steps = ok_json("workflow", "steps", "bs-1", "--database-url", db_url)
    assert steps[0]["error"]["type"] == "builtins:ValueError"
    assert steps[0]["error"]["message"] == "step went wrong"
    assert "ValueError: step went wrong" in ok("workflow", "steps", "bs-1",
                                                "--database-url", db_url)


def test_values_render_the_same_whether_or_not_their_class_is_importable(
        dbos: Any, db_url: str) -> None:
    assert run(make_point, "pt-1", 3) == Point(3, 4)
    here = str(Path(__file__).parent)
    for env in ({}, {"PYTHONPATH": here}):  # test_cli.Point importable by the CLI or not
        r = cli("workflow", "get", "pt-1", "--database-url", db_url, "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["output"] == {"x": 3, "y": 4}


# --- cancel and resume ---------------------------------------------------------------------


def test_cancel_blocked_workflow_then_resume_it(dbos: Any, db_url: str) -> None:
    url = ("--database-url", db_url)
    handle = start(waiter, "c-1")
    wait_for(lambda: blocked_in_recv("c-1"), "the workflow to block in DBOS.recv")

    out = ok("workflow", "cancel", "c-1", *url)
    assert "CANCELLED" in out and "was PENDING" in out
    assert status_of(db_url, "c-1") == "CANCELLED"
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=30)
    assert "already cancelled" in ok("workflow", "cancel", "c-1", *url)

    out = ok("workflow", "resume", "c-1", *url)
    assert "PENDING again (was CANCELLED)" in out
    assert "pick" in out and "recovery scan" in out
    DBOS.send("c-1", "hi", topic="go")
    assert DBOS.retrieve_workflow("c-1").get_result(timeout_seconds=30) == "got hi"
    assert status_of(db_url, "c-1") == "SUCCESS"

    # Finished workflows are left alone.
    assert "already finished" in ok("workflow", "cancel", "c-1", *url)
    assert "nothing to resume" in ok("workflow", "resume", "c-1", *url)
    data = ok_json("workflow", "cancel", "c-1", *url)
    assert data == {"workflow_id": "c-1", "cancelled": False, "previous_status": "SUCCESS",
                    "status": "SUCCESS"}


def test_the_cli_writes_the_databases_time_whatever_its_hosts_clock(
        dbos: Any, db_url: str, backend: str, tmp_path: Path) -> None:
    """A `relos` command run on a host whose clock is an hour ahead stamps what
    it changes with the database server's time, as the cluster's executors do
    (a cancel's time is the workflow's updated_at)."""
    if backend != "postgres":
        pytest.skip("an SQLite file serves one host: one clock")
    (tmp_path / "sitecustomize.py").write_text(  # the CLI process's clock, an hour ahead
        "import time\n_real = time.time\ntime.time = lambda: _real() + 3600\n")
    skewed = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    start(waiter, "clock-1")
    wait_for(lambda: blocked_in_recv("clock-1"), "the workflow to block in DBOS.recv")
    ok("workflow", "cancel", "clock-1", "--database-url", db_url, env=skewed)
    row = dbos.list_workflows(workflow_ids=["clock-1"])[0]
    assert row.status == "CANCELLED"
    assert abs(row.updated_at - time.time() * 1000) < 60_000, row.updated_at


def test_resume_failed_workflow_replays_recorded_steps(dbos: Any, db_url: str) -> None:
    tag = f"resume-{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError):
        run(flaky, "r-1", tag)
    assert status_of(db_url, "r-1") == "ERROR"
    FIXED.add(tag)  # the "bug fix"

    data = ok_json("workflow", "resume", "r-1", "--database-url", db_url)
    assert data["resumed"] is True and data["previous_status"] == "ERROR"
    assert data["status"] == "PENDING" and data["recorded_steps"] == 1
    assert DBOS.retrieve_workflow("r-1").get_result(timeout_seconds=30) == "fixed"
    assert CALLS[tag] == 1  # the recorded step was replayed, not run again
    row = ok_json("workflow", "get", "r-1", "--database-url", db_url)
    assert row["status"] == "SUCCESS" and row["error"] is None


def test_resume_leaves_pending_workflow_alone(dbos: Any, db_url: str) -> None:
    start(waiter, "p-1")
    wait_for(lambda: blocked_in_recv("p-1"), "the workflow to block in DBOS.recv")
    owner = ok_json("workflow", "get", "p-1", "--database-url", db_url)["owner"]
    assert "already PENDING" in ok("workflow", "resume", "p-1", "--database-url", db_url)
    row = ok_json("workflow", "get", "p-1", "--database-url", db_url)
    assert row["status"] == "PENDING" and row["owner"] == owner


# --- fork ----------------------------------------------------------------------------------


def test_fork_replays_steps_before_the_start_step(dbos: Any, db_url: str) -> None:
    tag = f"fork-{uuid.uuid4().hex}"
    url = ("--database-url", db_url)
    assert run(two_steps, "src-1", tag) == [1, 1]

    data = ok_json("workflow", "fork", "src-1", "--step", "2", *url)
    new_id = data["workflow_id"]
    assert new_id != "src-1" and data["forked_from"] == "src-1"
    assert data["start_step"] == 2 and data["copied_steps"] == 2 and data["status"] == "PENDING"
    assert DBOS.retrieve_workflow(new_id).get_result(timeout_seconds=30) == [1, 2]
    assert CALLS[f"{tag}:a"] == 1 and CALLS[f"{tag}:b"] == 2
    row = ok_json("workflow", "get", new_id, *url)
    assert row["forked_from"] == "src-1" and row["status"] == "SUCCESS"
    assert row["inputs"] == {"args": [tag], "kwargs": {}}

    out = ok("workflow", "fork", "src-1", "--step", "0", "--new-id", "fork-all", *url)
    assert "fork-all" in out and "picks it up" in out
    assert DBOS.retrieve_workflow("fork-all").get_result(timeout_seconds=30) == [2, 3]
    assert ok_json("workflow", "get", "fork-all", *url)["forked_from"] == "src-1"

    line = fails("workflow", "fork", "src-1", "--step", "0", "--new-id", "fork-all", *url)
    assert "already used" in line
    r = cli("workflow", "fork", "src-1", *url)
    assert r.returncode == 2 and "--step" in r.stderr


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["workflow", "get", "nope"],
    ["workflow", "get", "nope", "--json"],
    ["workflow", "steps", "nope"],
    ["workflow", "cancel", "nope"],
    ["workflow", "resume", "nope"],
    ["workflow", "fork", "nope", "--step", "0"],
])
def test_unknown_workflow_id(db_url: str, command: list[str]) -> None:
    ok("migrate", "--database-url", db_url)
    line = fails(*command, "--database-url", db_url)
    assert line.startswith("error: no workflow with ID 'nope'")


@pytest.mark.parametrize("command", [
    ["migrate"], ["workflow", "list"], ["workflow", "get", "x"], ["workflow", "steps", "x"],
    ["workflow", "cancel", "x"], ["workflow", "resume", "x"], ["workflow", "fork", "x", "--step",
                                                               "1"], ["demo"],
])
def test_malformed_url(command: list[str], tmp_path: Path) -> None:
    line = fails(*command, "--database-url", "foo://x", cwd=tmp_path)
    assert "unsupported database URL scheme 'foo'" in line
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_malformed_sqlite_url() -> None:
    line = fails("workflow", "list", "--database-url", "sqlite://relative.sqlite")
    assert "malformed SQLite URL" in line


@pytest.mark.parametrize("command", [["migrate"], ["workflow", "list"],
                                     ["workflow", "get", "x"]])
def test_unreachable_postgres(command: list[str]) -> None:
    pytest.importorskip("psycopg")
    line = fails(*command, "--database-url", "postgresql://postgres@127.0.0.1:1/x")
    assert "cannot connect to PostgreSQL" in line


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    line = fails("workflow", "list", cwd=tmp_path)
    assert "no relos database at" in line and "relos migrate" in line
    assert not (tmp_path / "relos.sqlite").exists()
    # migrate creates the default database in the working directory
    assert "applied migrations 1, " in ok("migrate", cwd=tmp_path)
    assert (tmp_path / "relos.sqlite").exists()
    assert "no workflows match" in ok("workflow", "list", cwd=tmp_path)


# --- demo ----------------------------------------------------------------------------------


def _check_demo_output(out: str) -> None:
    assert "demo passed" in out
    # Each email went out once: echoed once by the child that sent it...
    assert out.count("sent confirmation email to") == 1
    assert out.count("sent reminder email to") == 1
    # ...and the outbox holds one line of each.
    outbox = out.split("The outbox (2 emails):", 1)[1].split("steps recorded", 1)[0]
    assert outbox.count("confirmation email to") == 1
    assert outbox.count("reminder email to") == 1
    for check in ("✓ confirmation email sent exactly once", "✓ reminder email sent exactly once",
                  "✓ workflow finished with status SUCCESS", "✓ sleep resumed, not restarted"):
        assert check in out
    assert "Killed process 1" in out and "recovered 1 pending workflow" in out


@pytest.mark.slow
def test_demo_end_to_end(db_url: str) -> None:
    started = time.monotonic()
    out = ok("demo", "--sleep", "2", "--database-url", db_url, timeout=120)
    assert time.monotonic() - started < 30
    _check_demo_output(out)
    rows = ok_json("workflow", "list", "--database-url", db_url, "--name", "reminder_workflow")
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "SUCCESS" and row["recovery_attempts"] == 2
    assert row["output"] == "reminded ada@example.com"
    steps = ok_json("workflow", "steps", row["workflow_id"], "--database-url", db_url)
    assert [s["function_name"] for s in steps] == ["send_confirmation_email", "DBOS.sleep",
                                                    "send_reminder_email"]


@pytest.mark.slow
def test_demo_default_uses_a_temporary_database(tmp_path: Path) -> None:
    out = ok("demo", "--sleep", "2", cwd=tmp_path, timeout=120)
    _check_demo_output(out)
    assert "relos-demo.sqlite" in out and "Removed the demo database" in out
    assert list(tmp_path.iterdir()) == []  # nothing left in the working directory
