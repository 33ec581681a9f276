"""relos: a database-oriented operating system for cloud applications.

Durable workflows whose every step is checkpointed in a database (embedded
SQLite by default, PostgreSQL in production), with an API shaped like
DBOS Transact's::

    from relos import DBOS

    @DBOS.workflow()
    def reminder_workflow(email: str, time_to_sleep: int) -> None:
        send_confirmation_email(email)
        DBOS.sleep(time_to_sleep)
        send_reminder_email(email)
"""

from relos.client import DBOSClient, EnqueueOptions
from relos.config import Config
from relos.dbos import DBOS
from relos.errors import (
    ApplicationVersionNotFoundError,
    AwaitedWorkflowCancelledError,
    ConfigError,
    DatabaseUnreachableError,
    MaxRecoveryAttemptsExceededError,
    MaxStepRetriesExceededError,
    NonDeterministicWorkflowError,
    NonExistentWorkflowError,
    NotLaunchedError,
    QueueDeduplicatedError,
    QueueNotFoundError,
    RecordedError,
    RelosError,
    ScheduleNotFoundError,
    SerializationError,
    WorkflowCancelledError,
    WorkflowConflictError,
    WorkflowNotRegisteredError,
    WorkflowSuspendedError,
)
from relos.queues import Queue, SetEnqueueOptions
from relos.runtime.context import SetWorkflowID, SetWorkflowTimeout
from relos.runtime.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from relos.schedules import ScheduleInfo
from relos.store.base import (
    CANCELLED,
    DELAYED,
    ENQUEUED,
    ERROR,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    PENDING,
    SUCCESS,
    ApplicationVersion,
)

__all__ = [
    "DBOS",
    "DBOSClient",
    "EnqueueOptions",
    "Config",
    "Queue",
    "SetEnqueueOptions",
    "QueueDeduplicatedError",
    "ScheduleInfo",
    "QueueNotFoundError",
    "ScheduleNotFoundError",
    "ApplicationVersion",
    "ApplicationVersionNotFoundError",
    "DELAYED",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
    "PENDING",
    "SUCCESS",
    "ERROR",
    "CANCELLED",
    "ENQUEUED",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
    "RelosError",
    "ConfigError",
    "DatabaseUnreachableError",
    "NotLaunchedError",
    "SerializationError",
    "RecordedError",
    "WorkflowNotRegisteredError",
    "NonExistentWorkflowError",
    "WorkflowConflictError",
    "WorkflowSuspendedError",
    "NonDeterministicWorkflowError",
    "WorkflowCancelledError",
    "AwaitedWorkflowCancelledError",
    "MaxRecoveryAttemptsExceededError",
    "MaxStepRetriesExceededError",
]
