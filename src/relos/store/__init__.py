"""The store layer: the only place relos speaks SQL.

:func:`open_store` turns a database URL into a :class:`SystemStore`:

- no URL: the embedded SQLite file ``relos.sqlite`` in the working directory;
- ``sqlite:///relative/path.sqlite`` or ``sqlite:////absolute/path.sqlite``;
- ``postgresql://user:password@host:port/database`` (needs ``relos[postgres]``).
"""

from __future__ import annotations

import re

from relos import errors
from relos.store.base import SystemStore

DEFAULT_SQLITE_PATH = "relos.sqlite"


def parse_url(url: str | None) -> tuple[str, str]:
    """(backend, location) for a database URL; raises ConfigError when malformed."""
    if url is None or url == "":
        return "sqlite", DEFAULT_SQLITE_PATH
    if not isinstance(url, str):
        raise errors.ConfigError(f"a database URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower().split("+", 1)[0]
    if not sep:
        raise errors.ConfigError(
            f"malformed database URL {url!r}: expected sqlite:///path/to/file.sqlite or "
            f"postgresql://user:password@host:port/database"
        )
    if scheme == "sqlite":
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise errors.ConfigError(
                f"malformed SQLite URL {url!r}: give a file, as sqlite:///relative/file.sqlite "
                f"or sqlite:////absolute/file.sqlite (in-memory databases cannot be shared "
                f"between threads and processes)"
            )
        return "sqlite", rest[1:]
    if scheme in ("postgresql", "postgres"):
        if not rest or rest.startswith("/"):
            raise errors.ConfigError(
                f"malformed PostgreSQL URL {url!r}: expected "
                f"postgresql://user:password@host:port/database"
            )
        return "postgres", "postgresql://" + rest
    raise errors.ConfigError(
        f"unsupported database URL scheme {scheme!r} in {url!r}: use sqlite:/// or postgresql://"
    )


def redact(url: str) -> str:
    """The URL with its password hidden, for error messages and logs."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url, flags=re.I)


def open_store(
    url: str | None, *, sqlite_synchronous: str = "FULL", schema: str = "relos",
    pool_size: int = 16, create_database: bool = True, sqlite_busy_timeout: float = 30.0,
) -> SystemStore:
    """Open (not migrate) the store a URL names. A missing PostgreSQL database
    is created unless ``create_database`` is False (then it is an error)."""
    backend, location = parse_url(url)
    if backend == "sqlite":
        from relos.store.sqlite import SQLiteStore

        return SQLiteStore(location, synchronous=sqlite_synchronous,
                           busy_timeout_ms=int(sqlite_busy_timeout * 1000))
    from relos.store.postgres import PostgresStore

    return PostgresStore(location, schema=schema, pool_size=pool_size,
                         create_database=create_database)


__all__ = ["SystemStore", "open_store", "parse_url", "redact", "DEFAULT_SQLITE_PATH"]
