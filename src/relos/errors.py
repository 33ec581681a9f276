"""Every error relos raises.

One base class, :class:`RelosError`, and one subclass per thing that can go
wrong. Each message says what happened *and* what to do next. Driver errors
(sqlite3, psycopg) are translated into these at the store boundary, so user code
never has to import a driver to catch a relos failure.
"""

from __future__ import annotations

from collections.abc import Sequence


class RelosError(Exception):
    """Base class of every error raised by relos.

    Errors whose constructor takes other arguments than their message keep
    them in ``__relos_init_args__``, so a recorded error is rebuilt as its own
    type when a workflow's outcome is read back.
    """


# --- configuration and database access -------------------------------------------------


class ConfigError(RelosError, ValueError):
    """The configuration (or a database URL) is malformed."""


class DatabaseUnreachableError(RelosError, ConnectionError):
    """The database could not be reached or opened."""


class SchemaVersionError(RelosError):
    """The database schema was written by a newer relos than this one."""


class StoreError(RelosError):
    """The database refused an operation for a reason relos did not expect."""


class StreamClosedError(StoreError):
    """A value was written to a stream after its ``close_stream``."""


class NotLaunchedError(RelosError):
    """A relos operation was called before ``DBOS.launch()`` (or after ``destroy``)."""


# --- serialization ----------------------------------------------------------------------


class SerializationError(RelosError, TypeError):
    """A value cannot be stored: it names the argument or return value and the fix."""


class RecordedError(RelosError):
    """Stands in for a recorded exception whose original type cannot be rebuilt.

    ``error_type`` is the dotted name of the original class, ``recorded_message``
    its message and ``recorded_traceback`` the traceback text captured when it
    was raised.
    """

    def __init__(self, error_type: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.recorded_message = message
        self.recorded_traceback = traceback_text


# --- workflows --------------------------------------------------------------------------


class WorkflowNotRegisteredError(RelosError):
    """A workflow name found in the database has no registered function here."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"workflow function {name!r} is not registered in this process: import the "
            f"module that defines it (decorated with @DBOS.workflow()) before DBOS.launch()"
        )
        self.name = name
        self.__relos_init_args__ = (name,)


class NonExistentWorkflowError(RelosError, LookupError):
    """A workflow ID was given that the database does not know."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"no workflow with ID {workflow_id!r}: check the ID "
            f"(`relos workflow list` shows the known ones)"
        )
        self.workflow_id = workflow_id
        self.__relos_init_args__: tuple[object, ...] = (workflow_id,)


class WorkflowConflictError(RelosError):
    """A workflow ID is already in use by another workflow function, or a step of
    this workflow was recorded concurrently by another process."""


class WorkflowSuspendedError(WorkflowConflictError):
    """The run of a workflow in this process ended without an outcome because
    the workflow was suspended (it waits in ``DBOS.sleep``, ``DBOS.recv`` or
    ``DBOS.get_event`` without holding a thread): whichever executor resumes it
    records the outcome, so read it from the workflow's row (a handle's
    ``get_result`` does). Like a conflict, it means "finished elsewhere"."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} was suspended; it finishes when resumed")
        self.workflow_id = workflow_id
        self.__relos_init_args__: tuple[object, ...] = (workflow_id,)


class NonDeterministicWorkflowError(RelosError):
    """On replay, a workflow called a different step than the one recorded."""

    def __init__(self, workflow_id: str, function_id: int, recorded: str, called: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is not deterministic: step #{function_id} was recorded "
            f"as {recorded!r} but the code now calls {called!r}. Workflow code must call the "
            f"same steps in the same order on every run; move nondeterminism (clocks, random "
            f"numbers, I/O) into steps, or fork the workflow from before this step"
        )
        self.workflow_id = workflow_id
        self.function_id = function_id
        self.__relos_init_args__ = (workflow_id, function_id, recorded, called)


class WorkflowCancelledError(RelosError):
    """Raised inside a workflow that was cancelled (or timed out) to stop it."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} was cancelled")
        self.workflow_id = workflow_id
        self.__relos_init_args__: tuple[object, ...] = (workflow_id,)


class AwaitedWorkflowCancelledError(RelosError):
    """``get_result()`` was called on a workflow that was cancelled."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} was cancelled and has no result; "
            f"`relos workflow resume {workflow_id}` runs it again from its last step"
        )
        self.workflow_id = workflow_id
        self.__relos_init_args__: tuple[object, ...] = (workflow_id,)


class MaxRecoveryAttemptsExceededError(RelosError):
    """``get_result()`` on a workflow that was dead-lettered after too many recoveries."""

    def __init__(self, workflow_id: str, attempts: int) -> None:
        super().__init__(
            f"workflow {workflow_id!r} was recovered {attempts} times without finishing and "
            f"is dead-lettered (MAX_RECOVERY_ATTEMPTS_EXCEEDED); fix the cause, then "
            f"`relos workflow resume {workflow_id}`"
        )
        self.workflow_id = workflow_id
        self.__relos_init_args__ = (workflow_id, attempts)


class MaxStepRetriesExceededError(RelosError):
    """A step with retries failed on every attempt; ``errors`` holds each failure."""

    def __init__(self, step_name: str, attempts: int, errors: Sequence[BaseException]) -> None:
        last = errors[-1] if errors else None
        super().__init__(
            f"step {step_name!r} failed {attempts} times; last error: "
            f"{type(last).__name__ if last else 'none'}: {last}"
        )
        self.step_name = step_name
        self.attempts = attempts
        self.errors = list(errors)
        self.__relos_init_args__ = (step_name, attempts, errors)


class WorkflowTimeoutError(WorkflowCancelledError):
    """Raised inside a workflow whose deadline (``SetWorkflowTimeout``) passed."""


# --- queues -------------------------------------------------------------------------------


class QueueDeduplicatedError(RelosError):
    """A workflow was enqueued with a deduplication ID that an unfinished
    workflow of the same queue already holds."""

    def __init__(self, queue_name: str, deduplication_id: str, existing_id: str) -> None:
        super().__init__(
            f"queue {queue_name!r} already holds unfinished workflow {existing_id!r} with "
            f"deduplication ID {deduplication_id!r}: wait for it to finish, or enqueue with "
            f"SetEnqueueOptions(deduplication_id=..., return_existing=True) to get its handle"
        )
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id
        self.existing_id = existing_id
        self.__relos_init_args__ = (queue_name, deduplication_id, existing_id)


# --- schedules ----------------------------------------------------------------------------


class QueueNotFoundError(RelosError, LookupError):
    """A queue name was given that neither this process's code nor the database knows."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no queue named {name!r}: define it with Queue({name!r}) or "
            f"DBOS.register_queue({name!r}) (`relos queue list` shows the stored ones)"
        )
        self.name = name
        self.__relos_init_args__: tuple[object, ...] = (name,)


class ScheduleNotFoundError(RelosError, LookupError):
    """A schedule name was given that the database does not know."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no schedule named {name!r}: check the name (`relos schedule list` shows the "
            f"known ones)"
        )
        self.name = name
        self.__relos_init_args__: tuple[object, ...] = (name,)


# --- application versions -----------------------------------------------------------------


class ApplicationVersionNotFoundError(RelosError, LookupError):
    """An application version was named that no executor has launched with."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(repr(k) for k in known) if known else "none yet"
        super().__init__(
            f"no application version named {name!r}: the known versions are {listed} "
            f"(`relos versions list` shows them; a version is known once an executor "
            f"has launched with it)"
        )
        self.name = name
        self.known = list(known)
        self.__relos_init_args__: tuple[object, ...] = (name, list(known))
