"""The registry of decorated functions, filled at import time.

Decorators run before ``DBOS.launch()`` (usually at module import), so the
registry is process-global. Recovery finds a workflow's function here by the
name recorded in its row.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relos import errors
from relos.store.base import check_isolation as check_isolation  # re-exported for the decorators

DEFAULT_MAX_RECOVERY_ATTEMPTS = 100


@dataclass
class WorkflowInfo:
    name: str
    func: Callable[..., Any]
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS
    is_async: bool = False


@dataclass
class RetryPolicy:
    retries_allowed: bool = False
    max_attempts: int = 3
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0

    def attempts(self) -> int:
        return self.max_attempts if self.retries_allowed else 1

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(self.interval_seconds * self.backoff_rate ** (attempt - 1))


@dataclass
class StepInfo:
    name: str
    func: Callable[..., Any]
    kind: str = "step"  # or "transaction"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    isolation_level: str | None = None
    is_async: bool = False


_workflows: dict[str, WorkflowInfo] = {}


def qualified_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))


def register_workflow(info: WorkflowInfo) -> None:
    existing = _workflows.get(info.name)
    if existing is not None and existing.func is not info.func and (
        getattr(existing.func, "__module__", None) != getattr(info.func, "__module__", None)
        or qualified_name(existing.func) != qualified_name(info.func)
    ):
        raise errors.ConfigError(
            f"two different workflow functions are named {info.name!r}: give one of them "
            f"another name with @DBOS.workflow(name=...)"
        )
    _workflows[info.name] = info


def get_workflow(name: str) -> WorkflowInfo:
    info = _workflows.get(name)
    if info is None:
        raise errors.WorkflowNotRegisteredError(name)
    return info


def workflows() -> dict[str, WorkflowInfo]:
    return dict(_workflows)


def application_version() -> str:
    """A hash of the registered workflows' source: it changes when their code does."""
    digest = hashlib.sha256()
    for name in sorted(_workflows):
        func = _workflows[name].func
        try:
            src = inspect.getsource(func)
        except (OSError, TypeError):
            src = qualified_name(func)
        digest.update(name.encode())
        digest.update(src.encode())
    return digest.hexdigest()[:16]


def check_retry_args(max_attempts: int, interval_seconds: float, backoff_rate: float) -> None:
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise errors.ConfigError(f"max_attempts must be an integer >= 1, not {max_attempts!r}")
    if interval_seconds < 0:
        raise errors.ConfigError(f"interval_seconds must be >= 0, not {interval_seconds!r}")
    if backoff_rate < 1:
        raise errors.ConfigError(f"backoff_rate must be >= 1, not {backoff_rate!r}")



