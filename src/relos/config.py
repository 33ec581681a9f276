"""Configuration: a dict given to ``DBOS(config=...)``, overridden by ``RELOS_*``
environment variables, validated once at construction.

No URL at all means the embedded SQLite file ``relos.sqlite`` in the working
directory. Every key and its environment variable:

=============================  =====================================  ==========
key                            environment variable                   default
=============================  =====================================  ==========
name                           RELOS_NAME                             "relos"
system_database_url            RELOS_SYSTEM_DATABASE_URL              SQLite file
application_database_url       RELOS_APPLICATION_DATABASE_URL         system db
executor_id                    RELOS_EXECUTOR_ID                      "local"
application_version            RELOS_APPLICATION_VERSION              hash of code
log_level                      RELOS_LOG_LEVEL                        "INFO"
sqlite_synchronous             RELOS_SQLITE_SYNCHRONOUS               "FULL"
sqlite_busy_timeout_seconds    RELOS_SQLITE_BUSY_TIMEOUT_SECONDS      30
system_database_schema         RELOS_SYSTEM_DATABASE_SCHEMA           "relos"
serializer                     RELOS_SERIALIZER                       "json"
max_workflow_threads           RELOS_MAX_WORKFLOW_THREADS             64
database_pool_size             RELOS_DATABASE_POOL_SIZE               16
executor_lease_seconds         RELOS_EXECUTOR_LEASE_SECONDS           10
recovery_interval_seconds      RELOS_RECOVERY_INTERVAL_SECONDS        5
poll_interval_seconds          RELOS_POLL_INTERVAL_SECONDS            0.1 / 1.0
use_listen_notify              RELOS_USE_LISTEN_NOTIFY                true
suspend_after_seconds          RELOS_SUSPEND_AFTER_SECONDS            5 ("off": never)
gc_threshold                   RELOS_GC_THRESHOLD                     20000 (0: leave)
=============================  =====================================  ==========
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import Any

from relos import identifiers
from relos.errors import ConfigError


@dataclass
class Config:
    name: str = "relos"
    system_database_url: str | None = None
    application_database_url: str | None = None
    executor_id: str = "local"
    application_version: str | None = None
    log_level: str = "INFO"
    sqlite_synchronous: str = "FULL"
    #: How long a write waits for the SQLite file's write lock, held by another
    #: process or connection, before it gives up with DatabaseUnreachableError
    #: (a workflow so stopped runs again once the lock is free).
    sqlite_busy_timeout_seconds: float = 30.0
    system_database_schema: str = "relos"
    serializer: str = "json"
    max_workflow_threads: int = 64
    database_pool_size: int = 16
    executor_lease_seconds: float = 10.0
    recovery_interval_seconds: float = 5.0
    #: How often a waiter re-reads the database; None picks 0.1 s on SQLite and
    #: 1 s on PostgreSQL (where NOTIFY wakes waiters at once).
    poll_interval_seconds: float | None = None
    #: Wake waiters and idle dequeuers of other processes' writes: with
    #: LISTEN/NOTIFY on PostgreSQL, by a thread watching the file's commit
    #: count on SQLite. Turn off behind a connection pooler in transaction mode
    #: (PgBouncer), which cannot hold a LISTEN; polling alone then finds new
    #: work.
    use_listen_notify: bool = True
    #: A workflow waiting in DBOS.sleep, DBOS.recv or DBOS.get_event longer than
    #: this is suspended: its thread is released and any executor resumes it
    #: (by replay) when its time comes or its message or event arrives. A
    #: sleep longer than this is suspended at once; 0 suspends every wait;
    #: None (or "off" in the environment) never suspends.
    suspend_after_seconds: float | None = 5.0
    #: While launched, the cyclic garbage collector's first threshold is at
    #: least this (``gc.set_threshold``; the interpreter's default is 700, and
    #: a higher one set by the application is kept); the previous setting is
    #: back after ``DBOS.destroy()``. A busy executor keeps thousands of
    #: workflows in flight (claimed, running, committing), and at 700 the
    #: collector walked them every few hundred tasks: measured, 9 µs of each
    #: tiny task, 1 µs at 20,000. 0 leaves the interpreter's setting alone.
    gc_threshold: int = 20000


_NUMERIC = {"max_workflow_threads": int, "database_pool_size": int,
            "executor_lease_seconds": float, "recovery_interval_seconds": float,
            "poll_interval_seconds": float, "sqlite_busy_timeout_seconds": float}


def env_var(key: str) -> str:
    return "RELOS_" + key.upper()


def load_config(given: dict[str, Any] | None) -> Config:
    """Validate ``given`` and apply environment overrides; raise ConfigError on
    unknown keys or values of the wrong kind."""
    given = dict(given or {})
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"unknown configuration key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(known))}"
        )
    for key in known:
        value = os.environ.get(env_var(key))
        if value is not None and value != "":
            given[key] = value
    for key, kind in _NUMERIC.items():
        if key in given and given[key] is not None:
            try:
                given[key] = kind(given[key])
            except (TypeError, ValueError):
                raise ConfigError(
                    f"configuration {key} (or {env_var(key)}) must be a number, "
                    f"not {given[key]!r}"
                ) from None
            if given[key] <= 0:
                raise ConfigError(f"configuration {key} must be positive, not {given[key]!r}")
    if "use_listen_notify" in given and isinstance(given["use_listen_notify"], str):
        text = given["use_listen_notify"].strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(
                f"use_listen_notify (or RELOS_USE_LISTEN_NOTIFY) must be true or false, "
                f"not {given['use_listen_notify']!r}")
        given["use_listen_notify"] = text in ("1", "true", "yes", "on")
    if "gc_threshold" in given:
        given["gc_threshold"] = _gc_threshold(given["gc_threshold"])
    if "suspend_after_seconds" in given:
        given["suspend_after_seconds"] = _suspend_after(given["suspend_after_seconds"])
    cfg = Config(**given)
    for key in ("name", "executor_id"):
        if not isinstance(getattr(cfg, key), str) or not getattr(cfg, key):
            raise ConfigError(f"configuration {key} must be a non-empty string")
        identifiers.check(getattr(cfg, key), f"configuration {key}")
    if cfg.application_version is not None:
        if not isinstance(cfg.application_version, str) or not cfg.application_version:
            raise ConfigError("configuration application_version must be a non-empty string")
        identifiers.check(cfg.application_version, "configuration application_version")
    if logging.getLevelName(str(cfg.log_level).upper()) not in range(0, 60):
        raise ConfigError(
            f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {cfg.log_level!r}"
        )
    return cfg


def _gc_threshold(value: Any) -> int:
    """A whole number >= 0 (0: leave the interpreter's collector alone)."""
    try:
        number = int(value) if not isinstance(value, (bool, float)) else -1
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise ConfigError(
            f"gc_threshold (or RELOS_GC_THRESHOLD) must be a whole number >= 0 "
            f"(0 leaves the garbage collector's setting alone), not {value!r}")
    return number


def _suspend_after(value: Any) -> float | None:
    """None (never suspend) or a number of seconds >= 0."""
    if value is None or (isinstance(value, str)
                         and value.strip().lower() in ("off", "none", "never")):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(
            f"suspend_after_seconds (or RELOS_SUSPEND_AFTER_SECONDS) must be a number of "
            f"seconds >= 0, or off/None to never suspend, not {value!r}"
        )
    return seconds
