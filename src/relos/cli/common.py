"""What every ``relos`` command shares: the ``--database-url`` option, the
consoles, opening the store, and turning stored rows into text or JSON.

The CLI reads and writes the system database through the store only; it never
launches a runtime, so it works without the application's code being importable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from relos import errors
from relos.serialization import deserialize_exception, deserialize_inputs, get_serializer
from relos.store import DEFAULT_SQLITE_PATH, SystemStore, open_store, parse_url, redact
from relos.store.base import StepRow, WorkflowRow

F = TypeVar("F", bound=Callable[..., Any])

ENV_URL = "RELOS_SYSTEM_DATABASE_URL"
URL_HELP = (
    "The relos system database: sqlite:///path/to/file.sqlite or "
    f"postgresql://user:password@host:port/database. [env: {ENV_URL}; "
    f"default: the SQLite file {DEFAULT_SQLITE_PATH} in the current directory]"
)

STATUS_STYLES = {
    "PENDING": "yellow",
    "ENQUEUED": "cyan",
    "SUCCESS": "green",
    "ERROR": "red",
    "CANCELLED": "magenta",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "bold red",
}

_json_serializer = get_serializer("json")


# --- consoles ------------------------------------------------------------------------------


def console() -> Console:
    """The console for normal output (stdout). Written to a pipe or a file
    (``relos workflow list | grep ...``), a table is as wide as its widest
    row, not cut at 80 columns: an ID or a name stays on one line."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return Console(highlight=False, width=PIPE_WIDTH)
    return Console(highlight=False)


#: The line width tables may take when stdout is not a terminal.
PIPE_WIDTH = 1000


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """``error: <message>`` in red on stderr, on one line whatever the width
    (line breaks inside driver messages are folded into spaces)."""
    flat = re.sub(r"\s*\n\s*", " ", message.strip())
    error_console().print(Text(f"error: {flat}", style="red"), soft_wrap=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


# --- the --database-url option -------------------------------------------------------------


def database_url_option(func: F) -> F:
    """Add ``--database-url`` to a command. The value falls back to the one given
    before the command name (``relos --database-url URL workflow list``), then to
    RELOS_SYSTEM_DATABASE_URL, then to the SQLite file in the working directory."""
    return click.option(
        "--database-url", "database_url", metavar="URL", default=None, help=URL_HELP
    )(func)


def resolve_url(given: str | None) -> str | None:
    """The URL a command should use: its own option, else the top-level one."""
    if given is not None:
        return given
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, dict):
        value = root.obj.get("database_url")
        if isinstance(value, str) and value:
            return value
    env = os.environ.get(ENV_URL)
    return env or None



def describe_url(url: str | None) -> str:
    """A readable name for the database a URL points to."""
    backend, location = parse_url(url)
    if backend == "sqlite":
        return f"SQLite file {os.path.abspath(location)}"
    return f"PostgreSQL {redact(location)}"


@contextmanager
def opened_store(url: str | None, *, must_exist: bool = True) -> Iterator[SystemStore]:
    """Open the store for one command and close it afterwards.

    With ``must_exist`` (inspection commands) a missing SQLite file or a
    database without the relos schema is a clear error instead of a new empty
    file or an SQL error."""
    backend, location = parse_url(url)
    if must_exist and backend == "sqlite" and not os.path.exists(location):
        raise errors.DatabaseUnreachableError(
            f"no relos database at {os.path.abspath(location)}: pass --database-url (or set "
            f"{ENV_URL}) to the database your application uses, or run `relos migrate` "
            f"to create an empty one"
        )
    store = open_store(url, create_database=not must_exist)
    try:
        if must_exist and store.schema_version() == 0:
            raise errors.RelosError(
                f"the {describe_url(url)} has no relos schema yet: launch an application on "
                f"it or run `relos migrate`"
            )
        yield store
    finally:
        store.close()


def get_row(store: SystemStore, workflow_id: str) -> WorkflowRow:
    row = store.get_workflow(workflow_id)
    if row is None:
        raise errors.NonExistentWorkflowError(workflow_id)
    return row


def now_ms(store: SystemStore | None = None) -> int:
    """The time in epoch milliseconds: the database's clock when ``store`` is
    given (what the executors of a cluster go by), else this host's."""
    if store is not None:
        return store.clock_ms()
    return int(time.time() * 1000)


# --- times ---------------------------------------------------------------------------------


def local_time(ms: int | None, timespec: str = "seconds", *, offset: bool = True) -> str:
    """Epoch milliseconds as an ISO 8601 local time, with its UTC offset unless
    ``offset`` is False (tables name the offset once, in the column header)."""
    if ms is None:
        return "-"
    when = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    return (when if offset else when.replace(tzinfo=None)).isoformat(timespec=timespec)


def utc_offset() -> str:
    """This machine's current UTC offset, e.g. "UTC+01:00"."""
    text = dt.datetime.now().astimezone().strftime("%z")
    return f"UTC{text[:3]}:{text[3:]}"


def clock(ms: int) -> str:
    """Epoch milliseconds as a local wall-clock time, HH:MM:SS.mmm."""
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def parse_time(value: str, option: str) -> int:
    """An ISO 8601 time (local time unless it has an offset) as epoch milliseconds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time; use e.g. 2026-01-31T12:00:00 (local time) "
            f"or 2026-01-31T12:00:00+00:00",
            param_hint=option,
        ) from None
    return int(when.timestamp() * 1000)


# --- stored values -------------------------------------------------------------------------


@dataclasses.dataclass
class Decoded:
    """A stored value decoded, or the raw text when it could not be."""

    value: Any
    raw: str | None
    ok: bool = True


def _decode(text: str | None, decoder: Callable[[str], Any]) -> Decoded:
    if text is None:
        return Decoded(None, None)
    try:
        # Decoding a tagged value (dataclass, enum, exception...) imports the module
        # that defined its class if it can; keep anything that module prints off stdout,
        # where it would corrupt --json output.
        with contextlib.redirect_stdout(sys.stderr):
            return Decoded(decoder(text), text)
    except Exception:  # any undecodable value is shown as it is stored
        return Decoded(None, text, ok=False)


def decode_value(text: str | None) -> Decoded:
    return _decode(text, _json_serializer.loads)


def decode_inputs(text: str | None) -> Decoded:
    def inputs(raw: str) -> dict[str, Any]:
        args, kwargs = deserialize_inputs(_json_serializer, raw)
        return {"args": list(args), "kwargs": kwargs}

    return _decode(text, inputs)


def decode_error(text: str | None) -> Decoded:
    return _decode(text, lambda raw: deserialize_exception(_json_serializer, raw))


def error_parts(exc: BaseException) -> tuple[str, str]:
    """(type name, message) of a decoded error, as recorded."""
    if isinstance(exc, errors.RecordedError):
        return exc.error_type, exc.recorded_message
    return f"{type(exc).__module__}:{type(exc).__qualname__}", str(exc)


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-compatible rendering of a decoded value; repr() for anything else."""
    if depth > 50:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) \
            else repr(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): jsonable(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, BaseException):
        kind, message = error_parts(value)
        return {"type": kind, "message": message}
    # Objects rebuilt from their records (when their class could be imported) are
    # rendered like the plain data they degrade to when it cannot.
    if isinstance(value, Enum):
        return jsonable(value.value, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump") and not isinstance(value, type):
        try:
            return jsonable(value.model_dump(mode="json"), depth + 1)
        except Exception:
            return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return repr(value)


def json_of(decoded: Decoded) -> Any:
    """The JSON form of a decoded value: the value, or the raw text if undecodable."""
    return jsonable(decoded.value) if decoded.ok else decoded.raw


def error_json(text: str | None) -> Any:
    decoded = decode_error(text)
    if not decoded.ok or decoded.value is None:
        return decoded.raw
    kind, message = error_parts(decoded.value)
    return {"type": kind, "message": message,
            "traceback": getattr(decoded.value, "__relos_traceback__", None)}


def workflow_json(row: WorkflowRow) -> dict[str, Any]:
    """Every field of a workflow's row; times are epoch milliseconds."""
    data = dict(vars(row))
    data["inputs"] = json_of(decode_inputs(row.inputs))
    data["output"] = json_of(decode_value(row.output))
    data["error"] = error_json(row.error)
    return data


def is_sleep(step: StepRow) -> bool:
    return step.kind == "DBOS.sleep"


def wake_up_ms(step: StepRow) -> int | None:
    if not is_sleep(step) or not step.output:
        return None
    try:
        return int(float(step.output))
    except ValueError:
        return None


def step_json(step: StepRow) -> dict[str, Any]:
    return {
        "function_id": step.function_id,
        "function_name": step.function_name,
        "kind": step.kind,
        "output": None if is_sleep(step) else json_of(decode_value(step.output)),
        "error": error_json(step.error),
        "child_workflow_id": step.child_workflow_id,
        "executor_id": step.executor_id,
        "started_at_epoch_ms": step.started_at,
        "completed_at_epoch_ms": step.completed_at,
        "duration_ms": step.completed_at - step.started_at,
        "wake_up_at_epoch_ms": wake_up_ms(step),
    }


# --- human-readable text -------------------------------------------------------------------


def one_line(text: str, limit: int | None = 60) -> str:
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat


def show_value(decoded: Decoded, limit: int | None = 60) -> str:
    if not decoded.ok:
        return one_line(decoded.raw or "", limit)
    return one_line(repr(decoded.value), limit)


def show_inputs(decoded: Decoded, limit: int | None = 60) -> str:
    if not decoded.ok or not isinstance(decoded.value, dict):
        return show_value(decoded, limit)
    parts = [repr(a) for a in decoded.value["args"]]
    parts += [f"{k}={v!r}" for k, v in decoded.value["kwargs"].items()]
    return one_line("(" + ", ".join(parts) + ")", limit)


def show_error(text: str | None, limit: int | None = 60) -> str:
    decoded = decode_error(text)
    if not decoded.ok or decoded.value is None:
        return one_line(decoded.raw or "", limit)
    kind, message = error_parts(decoded.value)
    return one_line(f"{kind.rpartition(':')[2] or kind}: {message}", limit)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def step_detail(step: StepRow, limit: int | None = 60) -> Text:
    """The output, error, wake-up time or child of a step, abbreviated."""
    if step.error is not None:
        return Text(show_error(step.error, limit), style="red")
    if is_sleep(step):
        wake = wake_up_ms(step)
        return Text(f"wakes up at {local_time(wake, 'milliseconds', offset=False)}"
                    if wake else "-")
    if step.child_workflow_id:
        return Text(f"child workflow {step.child_workflow_id}")
    decoded = decode_value(step.output)
    if decoded.ok and decoded.value is None:
        return Text("-", style="dim")
    return Text(show_value(decoded, limit))
