"""relos's hot one-row statements on PostgreSQL, sent through libpq directly.

psycopg's cursor adapts each parameter through its adapter maps, keeps its own
prepared-statement cache and builds result rows with its row factories: about
40 µs of CPU per statement on top of libpq itself (measured on a 31-parameter
INSERT: 88 µs with a reused cursor, 49 µs here). That is much of the client's
work for an enqueue, a step record or a completion, all of them one statement.
Their parameters are text, integers, booleans, floats and NULLs only, so they
are encoded here in libpq's text format, prepared once per connection and
type signature, and run with ``PGconn.exec_prepared`` (psycopg's documented
``pq`` wrapper; the call releases the interpreter's lock while it waits, as
psycopg's own waiting does). Result values are read by psycopg's own loaders
for their column types, so a row is what a cursor would have returned.

Any other parameter type makes :func:`run` return None: the caller runs the
statement through a cursor instead.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq

#: A parameter's type as the statement is prepared with: text and NULL are
#: "unknown" (the server types them by their use, as psycopg does for text).
_UNKNOWN, _INT8, _BOOL, _FLOAT8 = 0, 20, 16, 701
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
#: SQLSTATE of "prepared statement does not exist" (deallocated by someone else).
_NO_SUCH_STATEMENT = "26000"
_MARKERS = re.compile(r"%%|%s")
#: Statement names, unique in the process (so on every connection).
_names = itertools.count()


class _Prepared:
    """A statement prepared on one connection, and its result's loaders."""

    __slots__ = ("name", "loaders")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.loaders: list[Callable[[bytes], Any]] | None = None


def numbered(sql: str) -> bytes:
    """``sql`` with psycopg's ``%s`` markers numbered for libpq (``$1``...)."""
    n = 0

    def mark(m: re.Match[str]) -> str:
        nonlocal n
        if m.group(0) == "%%":
            return "%"
        n += 1
        return f"${n}"

    return _MARKERS.sub(mark, sql).encode()


_numbered: dict[str, bytes] = {}


def _text(v: str) -> bytes:
    if "\x00" in v:  # libpq would cut the text there
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return v.encode()


#: Each parameter type sent here: its type as prepared, and its text.
_TYPES: dict[type, int] = {str: _UNKNOWN, type(None): _UNKNOWN, int: _INT8, bool: _BOOL,
                           float: _FLOAT8}
_ENCODE: dict[type, Callable[[Any], bytes]] = {
    str: _text, int: lambda v: b"%d" % v, bool: lambda v: b"t" if v else b"f",
    float: lambda v: repr(v).encode()}


def run(conn: Any, sql: str, params: Sequence[Any]) -> tuple[pq.abc.PGresult, _Prepared] | None:
    """Run ``sql`` (psycopg's ``%s`` style) with ``params`` on ``conn``; the
    result and its statement, or None if a parameter has a type not sent here."""
    try:
        types = tuple(map(_TYPES.__getitem__, map(type, params)))
    except KeyError:
        return None
    values = [None if v is None else _ENCODE[type(v)](v) for v in params]
    cache: dict[tuple[str, tuple[int, ...]], _Prepared] | None = getattr(
        conn, "_relos_prepared", None)
    if cache is None:
        if conn.info.encoding != "utf-8":
            return None  # (relos's own connections are UTF-8; anything else: the cursor)
        cache = conn._relos_prepared = {}
    key = (sql, types)
    pgconn = conn.pgconn
    for attempt in (1, 2):
        st = cache.get(key)
        if st is None:
            st = _prepare(pgconn, cache, key)
        res = pgconn.exec_prepared(st.name, values)
        if res.status in _OK:
            return res, st
        error = _error(res, pgconn)
        if error.sqlstate == _NO_SUCH_STATEMENT and attempt == 1:
            cache.clear()  # DEALLOCATE ALL ran on this session: prepare again
            continue
        raise error
    raise AssertionError("unreachable")


def _prepare(pgconn: Any, cache: dict[tuple[str, tuple[int, ...]], _Prepared],
             key: tuple[str, tuple[int, ...]]) -> _Prepared:
    sql = key[0]
    text = _numbered.get(sql)
    if text is None:
        text = _numbered[sql] = numbered(sql)
    st = _Prepared(f"relos_{next(_names)}".encode())
    res = pgconn.prepare(st.name, text, list(key[1]))
    if res.status != pq.ExecStatus.COMMAND_OK:
        raise _error(res, pgconn)
    cache[key] = st
    return st


def _error(res: Any, pgconn: Any) -> psycopg.Error:
    """The psycopg error a failed result stands for (as a cursor would raise)."""
    state = res.error_field(pq.DiagnosticField.SQLSTATE)
    message = (res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
               or res.error_message or pgconn.error_message or b"").decode(errors="replace")
    if state is None:  # no answer from the server: the connection is gone
        return psycopg.OperationalError(message or "the connection to the server was lost")
    return psycopg.errors.lookup(state.decode())(message.strip())


def rows(conn: Any, res: Any, st: _Prepared) -> list[tuple[Any, ...]]:
    """The result's rows as tuples of Python values."""
    loaders = st.loaders
    if loaders is None:
        adapters = conn.adapters
        loaders = st.loaders = []
        for i in range(res.nfields):
            oid = res.ftype(i)
            loader = adapters.get_loader(oid, pq.Format.TEXT) or adapters.get_loader(
                _UNKNOWN, pq.Format.TEXT)
            loaders.append(loader(oid, conn).load)
    get = res.get_value
    out = []
    for r in range(res.ntuples):
        row = []
        for c, load in enumerate(loaders):
            v = get(r, c)
            row.append(None if v is None else load(v))
        out.append(tuple(row))
    return out


def rowcount(res: Any) -> int:
    n = res.command_tuples
    return -1 if n is None else int(n)
