"""Bad input and configuration through the public API: every mistake raises a
specific relos error, and nothing half-done is stored."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from relos import (
    DBOS,
    ERROR,
    ConfigError,
    DatabaseUnreachableError,
    NotLaunchedError,
    SerializationError,
    SetWorkflowID,
)


@DBOS.workflow()
def apierr_takes(lock: Any, label: str = "x") -> str:
    return label


@DBOS.step()
def apierr_bad_step_value() -> Any:
    return threading.Lock()


@DBOS.workflow()
def apierr_step_returns_lock() -> str:
    try:
        apierr_bad_step_value()
    except SerializationError as exc:
        return f"caught: {exc}"
    return "no error"


@DBOS.workflow()
def apierr_step_returns_lock_uncaught() -> None:
    apierr_bad_step_value()


@DBOS.workflow()
def apierr_returns_lock() -> Any:
    return threading.Lock()


@DBOS.workflow()
def apierr_sets_bad_event() -> str:
    try:
        DBOS.set_event("k", threading.Lock())
    except SerializationError as exc:
        return str(exc)
    return "no error"


@DBOS.workflow()
def apierr_ok(x: int) -> int:
    return x + 1


def apierr_not_a_workflow(x: int) -> int:
    return x


@pytest.fixture
def stopped() -> Any:
    """No relos runtime at all, before and after."""
    DBOS.destroy()
    yield DBOS
    DBOS.destroy()


# --- serialization -----------------------------------------------------------------------


def test_unserializable_argument_raises_and_stores_nothing(dbos: Any) -> None:
    with pytest.raises(SerializationError, match="'lock'") as info:
        apierr_takes(threading.Lock(), label="fine")
    assert "apierr_takes" in str(info.value)
    assert "lock" in str(info.value).lower()
    with pytest.raises(SerializationError, match="'lock'"):
        DBOS.start_workflow(apierr_takes, threading.Lock())
    with SetWorkflowID("apierr-lock-" + uuid.uuid4().hex), pytest.raises(SerializationError):
        DBOS.start_workflow(apierr_takes, lock=threading.Lock())
    assert DBOS.list_workflows() == []


def test_unserializable_step_result_is_a_serialization_error(dbos: Any) -> None:
    wid = "apierr-step-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        got = apierr_step_returns_lock()
    assert got.startswith("caught: ") and "apierr_bad_step_value" in got
    [step] = DBOS.list_workflow_steps(wid)
    assert isinstance(step["error"], SerializationError)
    assert step["output"] is None

    wid2 = wid + "-uncaught"
    with SetWorkflowID(wid2), pytest.raises(SerializationError, match="apierr_bad_step_value"):
        apierr_step_returns_lock_uncaught()
    status = DBOS.get_workflow_status(wid2)
    assert status is not None and status.status == ERROR
    assert isinstance(status.error, SerializationError)


def test_unserializable_workflow_result_fails_the_workflow(dbos: Any) -> None:
    handle = DBOS.start_workflow(apierr_returns_lock)
    with pytest.raises(SerializationError, match="apierr_returns_lock"):
        handle.get_result(timeout_seconds=10)
    status = handle.get_status()
    assert status.status == ERROR
    assert isinstance(status.error, SerializationError)
    with pytest.raises(SerializationError):
        DBOS.retrieve_workflow(handle.workflow_id).get_result()


def test_unserializable_message_and_event(dbos: Any) -> None:
    handle = DBOS.start_workflow(apierr_ok, 1)
    handle.get_result()
    with pytest.raises(SerializationError, match="DBOS.send"):
        DBOS.send(handle.workflow_id, threading.Lock())
    wid = "apierr-event-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert "event 'k'" in apierr_sets_bad_event()
    assert DBOS.get_all_events(wid) == {}
    assert DBOS.list_workflow_steps(wid) == []


# --- misuse ------------------------------------------------------------------------------


def test_start_workflow_on_a_plain_function(dbos: Any) -> None:
    with pytest.raises(ConfigError, match="not a workflow"):
        DBOS.start_workflow(apierr_not_a_workflow, 1)
    assert DBOS.list_workflows() == []


def test_calling_before_launch_and_after_destroy(stopped: Any, db_url: str) -> None:
    with pytest.raises(NotLaunchedError):
        apierr_ok(1)
    with pytest.raises(NotLaunchedError):
        DBOS.start_workflow(apierr_ok, 1)
    with pytest.raises(NotLaunchedError):
        DBOS.list_workflows()
    DBOS(config={"system_database_url": db_url})
    with pytest.raises(NotLaunchedError):  # constructed but not launched
        apierr_ok(1)
    DBOS.launch()
    assert apierr_ok(1) == 2
    DBOS.destroy()
    with pytest.raises(NotLaunchedError):
        apierr_ok(1)


def test_second_instance_while_launched_is_refused(dbos: Any, db_url: str) -> None:
    with pytest.raises(ConfigError, match="already launched"):
        DBOS(config={"system_database_url": db_url})
    assert apierr_ok(2) == 3  # the running instance is unaffected


def test_decorator_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        DBOS.step(retries_allowed=True, max_attempts=0)
    with pytest.raises(ConfigError, match="max_recovery_attempts"):
        DBOS.workflow(max_recovery_attempts=-1)
    with pytest.raises(ConfigError, match="apierr_ok"):
        # Another function under an existing workflow name.
        DBOS.workflow(name="apierr_ok")(apierr_not_a_workflow)


# --- configuration -----------------------------------------------------------------------


def test_unknown_config_key(stopped: Any) -> None:
    with pytest.raises(ConfigError, match="system_databse_url"):
        DBOS(config={"system_databse_url": "sqlite:///x.sqlite"})
    with pytest.raises(ConfigError, match="executor_lease_seconds"):
        DBOS(config={"executor_lease_seconds": "soon"})
    with pytest.raises(ConfigError, match="sqlite_busy_timeout_seconds must be positive"):
        DBOS(config={"sqlite_busy_timeout_seconds": -1})


@pytest.mark.parametrize("url", [
    "not a url",
    "sqlite://",
    "sqlite:///:memory:",
    "mysql://user@host/db",
    "postgresql:///only-a-path",
])
def test_malformed_url_is_a_config_error(stopped: Any, url: str) -> None:
    with pytest.raises(ConfigError):
        DBOS(config={"system_database_url": url})
        DBOS.launch()
    with pytest.raises(NotLaunchedError):
        DBOS.list_workflows()


def test_unreachable_postgres_is_reported_at_launch(stopped: Any) -> None:
    pytest.importorskip("psycopg")
    DBOS(config={"system_database_url": "postgresql://postgres@127.0.0.1:1/relos"})
    with pytest.raises(DatabaseUnreachableError, match="127.0.0.1"):
        DBOS.launch()
    with pytest.raises(NotLaunchedError):
        DBOS.list_workflows()


def test_unopenable_sqlite_is_reported_at_launch(stopped: Any, tmp_path: Any) -> None:
    DBOS(config={"system_database_url": f"sqlite:///{tmp_path}/missing-dir/relos.sqlite"})
    with pytest.raises(DatabaseUnreachableError, match="missing-dir"):
        DBOS.launch()


def test_env_var_overrides_config(stopped: Any, db_url: str, tmp_path: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELOS_SYSTEM_DATABASE_URL", db_url)
    monkeypatch.setenv("RELOS_EXECUTOR_ID", "from-env")
    DBOS(config={"system_database_url": f"sqlite:///{tmp_path}/ignored.sqlite",
                 "executor_id": "from-config"})
    assert DBOS.config is not None
    assert DBOS.config.system_database_url == db_url
    assert DBOS.config.executor_id == "from-env"
    DBOS.launch()
    handle = DBOS.start_workflow(apierr_ok, 41)
    assert handle.get_result() == 42
    assert handle.get_status().executor_id == "from-env"
    assert not (tmp_path / "ignored.sqlite").exists()
    DBOS.destroy()
    # The workflow is in the database the environment named.
    monkeypatch.delenv("RELOS_SYSTEM_DATABASE_URL")
    monkeypatch.delenv("RELOS_EXECUTOR_ID")
    DBOS(config={"system_database_url": db_url})
    DBOS.launch()
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == 42


@pytest.mark.parametrize("value", [-1, "many", 1.5, True, "-3"])
def test_bad_gc_threshold_is_a_config_error(stopped: Any, value: Any) -> None:
    with pytest.raises(ConfigError, match="gc_threshold .*whole number >= 0"):
        DBOS(config={"gc_threshold": value})


def test_gc_threshold_is_raised_while_launched_then_restored(stopped: Any, db_url: str,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        DBOS(config={"system_database_url": db_url, "gc_threshold": 12345})
        DBOS.launch()
        assert gc.get_threshold() == (12345, before[1], before[2])
        assert apierr_ok(1) == 2
        DBOS.destroy()
        assert gc.get_threshold() == (700, before[1], before[2])
        # A higher threshold the application chose is kept, and stays after.
        gc.set_threshold(50000, before[1], before[2])
        DBOS(config={"system_database_url": db_url, "gc_threshold": 12345})
        DBOS.launch()
        assert gc.get_threshold()[0] == 50000
        DBOS.destroy()
        assert gc.get_threshold()[0] == 50000
        # 0 (here from the environment) leaves the collector alone.
        gc.set_threshold(700, before[1], before[2])
        monkeypatch.setenv("RELOS_GC_THRESHOLD", "0")
        DBOS(config={"system_database_url": db_url})
        DBOS.launch()
        assert gc.get_threshold()[0] == 700
        DBOS.destroy()
    finally:
        gc.set_threshold(*before)
