"""``DBOSClient``: work with an application's workflows from a process that runs none.

A web front end that hands work to a worker fleet, a cron job, an operator's
script or a service of another team opens the application's system database
with a client, without the application's code and without launching: it
registers no executor, dequeues nothing, recovers nothing and never changes
the schema. It enqueues workflows by name on queues the application stores,
sends messages, reads events and streams, waits for results, and lists,
cancels, resumes and forks workflows::

    from relos import DBOSClient

    client = DBOSClient("postgresql://app@db/app")
    handle = client.enqueue({"queue_name": "orders", "workflow_name": "process_order"}, 7)
    print(handle.get_result())
    client.destroy()

A workflow enqueued without ``app_version`` runs on an executor of the
latest application version whose code registers ``workflow_name`` (it waits,
ENQUEUED, until one runs). Resumed and forked workflows are left PENDING with
no owner: an executor of the application takes them at its next recovery
scan (``recovery_interval_seconds``), as with ``relos workflow resume``.
Called inside a workflow, a client's calls are not steps of it: use ``DBOS``
there.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypedDict, TypeVar

from relos import errors, identifiers, queues
from relos.config import load_config
from relos.runtime import clock, comm, context, enqueueing, management
from relos.runtime.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from relos.runtime.registry import WorkflowInfo
from relos.runtime.runtime import Runtime
from relos.store import migrations, parse_url
from relos.store.base import PENDING, SUCCESS, QueueRow

T = TypeVar("T")

#: How long a client trusts a queue's limits it read (the executors' queue
#: runners refresh theirs about as often).
QUEUE_SETTINGS_SECONDS = 1.0


class EnqueueOptions(TypedDict, total=False):
    """What :meth:`DBOSClient.enqueue` enqueues: ``queue_name`` and
    ``workflow_name`` (as registered, ``@DBOS.workflow(name=...)`` or the
    function's qualified name) are required; the rest are optional.

    ``workflow_id``: the new workflow's ID (an ID already used returns that
    workflow's handle); ``app_version``: only executors of this version run
    it; ``workflow_timeout``: seconds from its start until it is cancelled;
    ``deduplication_id``, ``priority``, ``delay_seconds``,
    ``queue_partition_key``, ``return_existing``: as in ``SetEnqueueOptions``;
    ``authenticated_user``: the user it runs as."""

    queue_name: str
    workflow_name: str
    workflow_id: str
    app_version: str
    workflow_timeout: float
    deduplication_id: str
    priority: int
    delay_seconds: float
    queue_partition_key: str
    return_existing: bool
    authenticated_user: str


_OPTION_KEYS = frozenset(EnqueueOptions.__annotations__)
_REQUIRED = ("queue_name", "workflow_name")


def _not_here() -> None:
    """Stands for a workflow function this process does not have (serialization
    errors then name arguments by position)."""


class _ClientRuntime(Runtime):
    """A runtime that is never launched: the store, the serializer and the
    waits of a client. Queue limits it reads are kept for a second."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queues: dict[str, tuple[float, QueueRow | None]] = {}
        self._queues_lock = threading.Lock()

    def queue_settings(self, name: str) -> QueueRow | None:
        now = time.monotonic()
        with self._queues_lock:
            known = self._queues.get(name)
        if known is not None and now - known[0] < QUEUE_SETTINGS_SECONDS:
            return known[1]
        found = self.store.get_queues([name])
        row = found[0] if found else None
        with self._queues_lock:
            self._queues[name] = (now, row)
        return row


def _async(method: Callable[..., T]) -> Callable[..., Any]:
    """The awaitable variant of a client method: run on a helper thread; a
    handle it returns comes back as a ``WorkflowHandleAsync``."""

    @functools.wraps(method)
    async def run(self: DBOSClient, *args: Any, **kwargs: Any) -> Any:
        rt = self._runtime()
        result = await rt.run_blocking(functools.partial(method, self, *args, **kwargs))
        if isinstance(result, WorkflowHandle):
            return WorkflowHandleAsync(rt, result.workflow_id)
        return result

    run.__name__ = run.__qualname__ = f"{method.__name__}_async"
    run.__doc__ = f"As :meth:`{method.__name__}`, awaitable."
    return run


class DBOSClient:
    """A connection to an application's system database from outside it (see
    the module documentation).

    ``system_database_url``: as in the application's configuration (default:
    ``RELOS_SYSTEM_DATABASE_URL``, else the SQLite file ``relos.sqlite`` here).
    Other keyword arguments are configuration keys (``DBOS(config=...)``);
    those a client uses: ``system_database_schema``, ``serializer`` (must be
    the application's), ``database_pool_size``, ``poll_interval_seconds``,
    ``use_listen_notify``, ``sqlite_busy_timeout_seconds``, ``name`` (recorded
    as the enqueued workflows' application). The database must hold the
    schema of this relos version: launch the application or run ``relos
    migrate`` first."""

    def __init__(self, system_database_url: str | None = None, **config: Any) -> None:
        if system_database_url is not None:
            config["system_database_url"] = system_database_url
        cfg = load_config(config)
        backend, location = parse_url(cfg.system_database_url)
        if backend == "sqlite" and not os.path.exists(location):
            raise errors.DatabaseUnreachableError(
                f"no relos database at {os.path.abspath(location)}: give the client the "
                f"system_database_url your application uses")
        rt = _ClientRuntime(cfg, create_database=False)
        try:
            _check_schema(rt)
            rt._database_time()  # (this process's clock set to the server's if they differ)
            if cfg.use_listen_notify:  # (messages, events, streams, results wake waiters)
                rt.store.start_listener(rt.notifier.notify, queues=False,
                                        waited=rt.notifier.waited)
        except BaseException:
            rt.store.close()
            rt.committer.close()
            raise
        self._rt: _ClientRuntime | None = rt

    def _runtime(self) -> _ClientRuntime:
        rt = self._rt
        if rt is None:
            raise errors.NotLaunchedError("this DBOSClient was destroyed: create another")
        return rt

    def destroy(self) -> None:
        """Close the client's connections (its handles stop working)."""
        rt, self._rt = self._rt, None
        if rt is None:
            return
        rt.committer.close()
        rt._io_pool.shutdown(wait=False, cancel_futures=True)  # (the async variants' threads)
        rt.store.close()

    def __enter__(self) -> DBOSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # --- enqueueing ---------------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue workflow ``options["workflow_name"]`` with these arguments
        on queue ``options["queue_name"]``; its handle."""
        [handle] = self._enqueue(options, [(args, kwargs)])
        return handle

    def enqueue_many(self, options: EnqueueOptions, calls: Iterable[Any]
                     ) -> list[WorkflowHandle[Any]]:
        """One workflow per item of ``calls``, in one transaction (items as in
        ``Queue.enqueue_many``: argument tuples, ``relos.queues.Call``, or
        single arguments); their handles, in order."""
        if isinstance(calls, (str, bytes, dict)) or not isinstance(calls, Iterable):
            raise errors.ConfigError(
                f"enqueue_many takes an iterable of calls (a list of argument tuples, "
                f"say), not {type(calls).__name__}")
        return self._enqueue(options, [queues.as_call(item) for item in calls])

    def _enqueue(self, options: EnqueueOptions, calls: enqueueing.Calls
                 ) -> list[WorkflowHandle[Any]]:
        rt = self._runtime()
        opts = _checked(options)
        name = opts["queue_name"]
        row = rt.queue_settings(name)
        if row is None:
            raise errors.QueueNotFoundError(name)
        settings = queues.SetEnqueueOptions(
            deduplication_id=opts.get("deduplication_id"), priority=opts.get("priority"),
            delay_seconds=opts.get("delay_seconds"),
            queue_partition_key=opts.get("queue_partition_key"),
            app_version=opts.get("app_version"),
            return_existing=bool(opts.get("return_existing", False))).options
        info = WorkflowInfo(opts["workflow_name"], _not_here)
        workflow_id, timeout = opts.get("workflow_id"), opts.get("workflow_timeout")

        def run() -> list[str]:
            if workflow_id is not None:
                context._next_workflow_id.set(workflow_id)
            context._next_timeout.set(timeout)
            return enqueueing.enqueue(rt, info, queues.Queue.stored(row), calls, settings,
                                      authenticated_user=opts.get("authenticated_user"))

        ids = _outside(run)
        return [WorkflowHandle(rt, wid) for wid in ids]

    enqueue_async = _async(enqueue)
    enqueue_many_async = _async(enqueue_many)

    # --- workflows ----------------------------------------------------------------------

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle on an existing workflow (NonExistentWorkflowError if none)."""
        rt = self._runtime()
        if rt.store.get_workflow(workflow_id) is None:
            raise errors.NonExistentWorkflowError(workflow_id)
        return WorkflowHandle(rt, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        return management.get_status(self._runtime(), workflow_id)

    def list_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        """As ``DBOS.list_workflows``."""
        return management.list_workflows(self._runtime(), **filters)

    def list_queued_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        """As ``DBOS.list_queued_workflows``."""
        return management.list_queued_workflows(self._runtime(), **filters)

    def list_workflow_steps(self, workflow_id: str) -> list[dict[str, Any]]:
        return management.list_steps(self._runtime(), workflow_id)

    def cancel_workflow(self, workflow_id: str) -> None:
        """Cancel a PENDING, ENQUEUED or DELAYED workflow: it stops at its next
        step or wait (its executor notices within about a second)."""
        management.cancel(self._runtime(), workflow_id)

    def resume_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Make a cancelled, failed or dead-lettered workflow PENDING again
        with no owner; an executor replays its recorded steps and goes on.
        A finished or running one is left as it is."""
        rt = self._runtime()
        row = rt.store.get_workflow(workflow_id)
        if row is None:
            raise errors.NonExistentWorkflowError(workflow_id)
        if row.status not in (SUCCESS, PENDING):
            rt.store.resume_workflow(workflow_id, clock.now_ms())
        return WorkflowHandle(rt, workflow_id)

    def fork_workflow(self, workflow_id: str, start_step: int, *,
                      application_version: str | None = None,
                      new_workflow_id: str | None = None) -> WorkflowHandle[Any]:
        """A new workflow with ``workflow_id``'s inputs that replays its steps
        before ``start_step`` and runs the rest anew, on an executor of
        ``application_version`` (default: the original's)."""
        if not isinstance(start_step, int) or isinstance(start_step, bool) or start_step < 0:
            raise errors.ConfigError(f"start_step must be an integer >= 0, not {start_step!r}")
        if new_workflow_id is not None:
            _check_name(new_workflow_id, "new_workflow_id", "the workflow ID")
        if application_version is not None:
            _check_name(application_version, "application_version", "the application version")
        rt = self._runtime()
        src = rt.store.get_workflow(workflow_id)
        if src is None:
            raise errors.NonExistentWorkflowError(workflow_id)
        new_id = new_workflow_id or _new_id()
        rt.store.fork_workflow(workflow_id, new_id, start_step, management.fork_row(
            src, new_id, clock.now_ms(), application_version=application_version))
        return WorkflowHandle(rt, new_id)

    retrieve_workflow_async = _async(retrieve_workflow)
    get_workflow_status_async = _async(get_workflow_status)
    list_workflows_async = _async(list_workflows)
    list_queued_workflows_async = _async(list_queued_workflows)
    list_workflow_steps_async = _async(list_workflow_steps)
    cancel_workflow_async = _async(cancel_workflow)
    resume_workflow_async = _async(resume_workflow)
    fork_workflow_async = _async(fork_workflow)

    # --- messages, events, streams ------------------------------------------------------

    def send(self, destination_id: str, message: Any, topic: str | None = None,
             idempotency_key: str | None = None) -> None:
        """Send ``message`` to a workflow (``DBOS.recv`` there reads it); with
        ``idempotency_key``, sending again with the same key sends nothing."""
        _outside(comm.send, self._runtime(), destination_id, message, topic, idempotency_key)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The workflow's event ``key``, waiting for it up to the timeout (then None)."""
        return _outside(comm.get_event, self._runtime(), workflow_id, key, timeout_seconds)

    def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        return comm.get_all_events(self._runtime(), workflow_id)

    def read_stream(self, workflow_id: str, key: str) -> Iterator[Any]:
        """Yield the stream's values until it is closed or the workflow ends."""
        return comm.read_stream(self._runtime(), workflow_id, key)

    async def read_stream_async(self, workflow_id: str, key: str) -> AsyncIterator[Any]:
        rt = self._runtime()
        it = comm.read_stream(rt, workflow_id, key)
        done = object()
        while (value := await rt.run_blocking(next, it, done)) is not done:
            yield value

    send_async = _async(send)
    get_event_async = _async(get_event)
    get_all_events_async = _async(get_all_events)

    def __repr__(self) -> str:
        rt = self._rt
        where = "destroyed" if rt is None else rt.store.backend
        return f"DBOSClient({where})"


def _checked(options: Any) -> dict[str, Any]:
    """``options`` validated: a dict with the required keys, no unknown ones,
    values of the right kinds (the queue options are checked by
    SetEnqueueOptions, as for an enqueue in code)."""
    if not isinstance(options, dict):
        raise errors.ConfigError(
            f"enqueue options must be a dict such as {{'queue_name': 'q', 'workflow_name': "
            f"'my_workflow'}}, not {type(options).__name__}")
    unknown = sorted(set(options) - _OPTION_KEYS)
    if unknown:
        raise errors.ConfigError(
            f"unknown enqueue option(s) {', '.join(map(repr, unknown))}; valid options: "
            f"{', '.join(sorted(_OPTION_KEYS))}")
    for key in _REQUIRED:
        if key not in options:
            raise errors.ConfigError(
                f"enqueue options need {key!r} (the {key.split('_')[0]}'s name)")
        _check_name(options[key], key, f"the {key.replace('_', ' ')}")
    if options.get("workflow_id") is not None:
        _check_name(options["workflow_id"], "workflow_id", "the workflow ID")
    if options.get("authenticated_user") is not None:
        _check_name(options["authenticated_user"], "authenticated_user", "the user")
    timeout = options.get("workflow_timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not math.isfinite(timeout) or timeout <= 0):
        raise errors.ConfigError(
            f"workflow_timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(options.get("return_existing", False), bool):
        raise errors.ConfigError("return_existing must be True or False")
    return dict(options)


def _outside(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh context: called inside a workflow, a client's
    call is not a step of it (nor does it take the workflow's SetWorkflowID)."""
    return contextvars.Context().run(fn, *args)


def _check_name(value: Any, option: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise errors.ConfigError(f"{option} must be a non-empty string, not {value!r}")
    return identifiers.check(value, what)


def _new_id() -> str:
    from relos.runtime.ids import new_id

    return new_id()


def _check_schema(rt: Runtime) -> None:
    """The database holds this relos version's schema (a client never migrates)."""
    version, latest = rt.store.schema_version(), migrations.latest(rt.store.backend)
    if version == 0:
        raise errors.RelosError(
            "the database has no relos schema yet: launch the application on it or run "
            "`relos migrate`")
    if version > latest:
        raise migrations.too_new(version, latest)
    if version < latest:
        raise errors.RelosError(
            f"the database's relos schema is at version {version}, this relos needs "
            f"{latest}: launch the application with this relos version, or run "
            f"`relos migrate`, before using a client")
