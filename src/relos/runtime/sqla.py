"""``DBOS.sql_session``: a SQLAlchemy session over the running transaction's
own DB-API connection, so ORM writes commit atomically with the step record.

SQLAlchemy is optional and imported only when a session is first asked for.
The session must not commit or roll back by itself: relos ends the transaction.
"""

from __future__ import annotations

import contextvars
from typing import Any

from relos import errors
from relos.runtime import context

_session: contextvars.ContextVar[Any] = contextvars.ContextVar("relos_sql_session", default=None)
_engines: dict[str, Any] = {}


class _Borrowed:
    """The transaction's connection, lent to SQLAlchemy: it may run statements
    but its commit, rollback and close are relos's to do."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None

    def close(self) -> None:
        return None

    def add_notice_handler(self, handler: Any) -> None:
        # SQLAlchemy's psycopg dialect adds one per checkout: on a pooled
        # connection that relos reuses they would pile up forever.
        return None


def session() -> Any:
    conn = context._tx_connection.get()
    if conn is None:
        raise errors.RelosError(
            "DBOS.sql_session is only available inside a @DBOS.transaction function"
        )
    current = _session.get()
    if current is not None:
        return current
    try:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session
        from sqlalchemy.pool import NullPool
    except ImportError:
        raise errors.ConfigError(
            "DBOS.sql_session needs SQLAlchemy: pip install 'relos[sqlalchemy]' "
            "(or use DBOS.sql_connection for the raw DB-API connection)"
        ) from None
    dialect = "sqlite://" if type(conn).__module__.startswith("sqlite3") else "postgresql+psycopg://"
    engine = _engines.get(dialect)
    if engine is None:
        # No native hstore: its set-up needs a real psycopg connection, not a borrowed one.
        extra = {} if dialect == "sqlite://" else {"use_native_hstore": False}
        engine = create_engine(
            dialect, creator=lambda: _Borrowed(context._tx_connection.get()),
            poolclass=NullPool, pool_reset_on_return=None, **extra,
        )
        _engines[dialect] = engine
    sess = Session(bind=engine, autoflush=True, expire_on_commit=False)
    _session.set(sess)
    return sess


def close_session(flush: bool) -> None:
    """Flush pending ORM changes into the transaction (when the function
    succeeded) and drop the session."""
    sess = _session.get()
    if sess is None:
        return
    _session.set(None)
    try:
        if flush:
            sess.flush()
    finally:
        sess.close()
