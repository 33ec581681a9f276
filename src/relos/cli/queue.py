"""``relos queue list``: the queues, their limits and how much work waits in
each; ``relos queue set``: change a queue's limits for every executor, at run
time; ``relos queue reset``: hand them back to the application's code;
``relos queue enqueue``: enqueue a workflow by name (through ``DBOSClient``)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from relos import errors, queues
from relos.cli import common
from relos.store.base import (
    CANCELLED,
    ERROR,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    SUCCESS,
    QueueRow,
)


@click.group()
def queue() -> None:
    """Inspect queues, change their limits, enqueue workflows."""


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _age(seconds: float | None) -> str:
    """How long the longest-waiting ready workflow has waited: '-' for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _limits(name: str, q: QueueRow | None) -> dict[str, Any]:
    """A queue's stored limits as JSON (a queue with workflows but no stored
    row has none)."""
    return {
        "name": name,
        "concurrency": q.concurrency if q else None,
        "worker_concurrency": q.worker_concurrency if q else None,
        "rate_limit": q.rate_limit if q else None,
        "rate_period_seconds": q.rate_period_ms / 1000 if q and q.rate_period_ms else None,
        "priority_enabled": q.priority_enabled if q else False,
        "partitioned": q.partitioned if q else False,
        "defined_by": q.defined_by if q else None,
    }


@queue.command("list")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_queues(database_url: str | None, as_json: bool) -> None:
    """Every queue with its limits and depth (ENQUEUED, DELAYED and running),
    how long its longest-waiting ready workflow has waited, and for a
    rate-limited queue the starts its limiter counts now."""
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        now = common.now_ms(store)  # (the database's clock: the limiters' time)
        rows = {q.name: q for q in store.get_queues()}
        depths = store.queue_depths()
        waiting = store.queue_waiting_since(now)
        # What each rate limiter has counted in its current period.
        started = {name: store.rate_starts(name, now - q.rate_period_ms)
                   for name, q in rows.items()
                   if q.rate_limit is not None and q.rate_period_ms}
    names = sorted(set(rows) | set(depths))
    data: list[dict[str, Any]] = []
    for name in names:
        q = rows.get(name)
        depth = depths.get(name, {"ENQUEUED": 0, "DELAYED": 0, "PENDING": 0})
        data.append({
            **_limits(name, q),
            "started_in_period": started.get(name),
            "enqueued": depth["ENQUEUED"], "delayed": depth["DELAYED"],
            "running": depth["PENDING"],
            "longest_wait_seconds": (max(0, now - waiting[name]) / 1000
                                     if name in waiting else None),
        })
    if as_json:
        common.print_json(data)
        return
    out = common.console()
    if not data:
        out.print(Text("no queues: define one with Queue(name) in your application", style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Queue", "Enqueued", "Delayed", "Running", "Longest wait", "Limit",
                   "Per worker", "Rate", "Options"):
        table.add_column(column, justify="left" if column in ("Queue", "Options") else "right",
                         overflow="fold")
    for d in data:
        rate = ("-" if d["rate_limit"] is None
                else f"{d['started_in_period'] or 0} of {d['rate_limit']} / "
                     f"{d['rate_period_seconds']:g} s")
        options = ", ".join(o for o, on in (("priority", d["priority_enabled"]),
                                             ("partitioned", d["partitioned"])) if on)
        if d["defined_by"] == "runtime":
            options = ", ".join(filter(None, [options, "set at run time"]))
        table.add_row(d["name"], str(d["enqueued"]), str(d["delayed"]), str(d["running"]),
                      _age(d["longest_wait_seconds"]), _limit(d["concurrency"]),
                      _limit(d["worker_concurrency"]), rate, options or "-")
    out.print(table)


def _count(value: str | None, option: str, current: int | None) -> int | None:
    """A limit option's value: the current one when not given, None for 'none'."""
    if value is None:
        return current
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.ConfigError(f"{option} takes a whole number or 'none', not {value!r}"
                                 ) from None


def _rate(value: str | None, row: QueueRow) -> dict[str, Any] | None:
    """The --rate option as a limiter (the current one when not given)."""
    if value is None:
        if row.rate_limit is None or row.rate_period_ms is None:
            return None
        return {"limit": row.rate_limit, "period": row.rate_period_ms / 1000}
    if value.strip().lower() == "none":
        return None
    limit, slash, period = value.partition("/")
    try:
        if not slash:
            raise ValueError
        return {"limit": int(limit), "period": float(period)}
    except ValueError:
        raise errors.ConfigError(
            f"--rate takes STARTS/SECONDS (e.g. 50/30: at most 50 starts in any 30 seconds) "
            f"or 'none', not {value!r}") from None


def _stored(store: Any, name: str) -> QueueRow:
    found = store.get_queues([name])
    if not found:
        raise errors.QueueNotFoundError(name)
    row: QueueRow = found[0]
    return row


_LIMIT_HELP = "A whole number, or 'none' for no limit."


@queue.command("set")
@click.argument("name")
@click.option("--concurrency", metavar="N|none",
              help="Most workflows of the queue running at once in the cluster. " + _LIMIT_HELP)
@click.option("--worker-concurrency", metavar="N|none",
              help="Most running at once in each executor process. " + _LIMIT_HELP)
@click.option("--rate", metavar="STARTS/SECONDS|none",
              help="Most starts in any SECONDS seconds, e.g. 50/30; 'none': no rate limit.")
@click.option("--priority/--no-priority", default=None,
              help="Whether lower priority values start first.")
@click.option("--partitioned/--not-partitioned", default=None,
              help="Whether each partition key is limited on its own.")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the stored queue as JSON.")
def set_queue(name: str, concurrency: str | None, worker_concurrency: str | None,
              rate: str | None, priority: bool | None, partitioned: bool | None,
              database_url: str | None, as_json: bool) -> None:
    """Change a stored queue's limits for every executor (each picks the change
    up within about a second); the options left out keep their values. The
    limits are then set at run time: the application's code no longer replaces
    them at launch, until `relos queue reset`."""
    if all(v is None for v in (concurrency, worker_concurrency, rate, priority, partitioned)):
        raise errors.ConfigError(
            "nothing to change: give at least one of --concurrency, --worker-concurrency, "
            "--rate, --priority/--no-priority, --partitioned/--not-partitioned")
    with common.opened_store(common.resolve_url(database_url)) as store:
        row = _stored(store, name)
        # (validated as DBOS.register_queue validates them: the same errors)
        new = queues.queue_row(
            name, _count(concurrency, "--concurrency", row.concurrency),
            _count(worker_concurrency, "--worker-concurrency", row.worker_concurrency),
            _rate(rate, row), row.priority_enabled if priority is None else priority,
            row.partitioned if partitioned is None else partitioned, defined_by="runtime")
        saved = store.save_queue(dataclasses.replace(new, updated_at=common.now_ms(store)))
    _report(saved, as_json, f"queue {name!r} now has")


@queue.command("reset")
@click.argument("name")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the stored queue as JSON.")
def reset_queue(name: str, database_url: str | None, as_json: bool) -> None:
    """Hand a queue's limits back to the application's code: they stay as they
    are until an executor whose code defines the queue launches, which stores
    the code's limits."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        if not store.release_queue(name, common.now_ms(store)):
            raise errors.QueueNotFoundError(name)
        saved = _stored(store, name)
    _report(saved, as_json, f"queue {name!r} follows the code's limits from the next "
                            f"launch; until then it keeps")


def _report(row: QueueRow, as_json: bool, lead: str) -> None:
    if as_json:
        common.print_json(_limits(row.name, row))
        return
    common.console().print(f"{lead} {queues.describe(row)}")


# --- enqueue -------------------------------------------------------------------------------


def _json_argument(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise errors.ConfigError(
            f"{what} must be a JSON value (7, 2.5, true, null, \"text\", [1, 2], "
            f"{{\"a\": 1}}), not {text!r}: quote strings, e.g. '\"{text}\"'") from None


def _keyword_arguments(pairs: tuple[str, ...]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.isidentifier():
            raise errors.ConfigError(f"--kwarg takes NAME=JSON (e.g. note='\"hi\"'), not {pair!r}")
        kwargs[key] = _json_argument(value, f"--kwarg {key}")
    return kwargs


@queue.command("enqueue")
@click.argument("name")
@click.argument("workflow_name")
@click.argument("arguments", nargs=-1, metavar="[JSON_ARG]...")
@click.option("--kwarg", "kwarg_pairs", multiple=True, metavar="NAME=JSON",
              help="A keyword argument (repeatable).")
@click.option("--id", "workflow_id", default=None,
              help="The workflow's ID (an ID already used: that workflow, not a new one).")
@click.option("--priority", type=int, default=None, help="Lower starts first (queues with "
              "priorities).")
@click.option("--delay", "delay_seconds", type=float, default=None, metavar="SECONDS",
              help="Start no earlier than this many seconds from now.")
@click.option("--deduplication-id", default=None,
              help="Refuse it while another unfinished workflow of the queue has this ID.")
@click.option("--partition-key", default=None, help="Its partition (partitioned queues).")
@click.option("--app-version", default=None, help="Only executors of this version run it.")
@click.option("--workflow-timeout", type=float, default=None, metavar="SECONDS",
              help="Cancel it if still running this long after it starts.")
@click.option("--wait", is_flag=True, help="Wait for it to finish and print its outcome "
              "(exit status 1 if it failed or was cancelled).")
@click.option("--wait-timeout", type=float, default=None, metavar="SECONDS",
              help="With --wait: give up waiting after this long (exit status 2).")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def enqueue_workflow(name: str, workflow_name: str, arguments: tuple[str, ...],
                     kwarg_pairs: tuple[str, ...], workflow_id: str | None,
                     priority: int | None, delay_seconds: float | None,
                     deduplication_id: str | None, partition_key: str | None,
                     app_version: str | None, workflow_timeout: float | None, wait: bool,
                     wait_timeout: float | None, database_url: str | None,
                     as_json: bool) -> None:
    """Enqueue workflow WORKFLOW_NAME on queue NAME, each argument given as JSON.

    An executor of the application whose code registers WORKFLOW_NAME runs it
    (until one does, it waits ENQUEUED). Put -- before the arguments when one
    starts with '-' (a negative number).

    \b
    Example:
      relos queue enqueue orders process_order 7 '"express"' --kwarg note='"gift"'
    """
    from relos.client import DBOSClient, EnqueueOptions

    args = [_json_argument(a, f"argument #{i}") for i, a in enumerate(arguments)]
    kwargs = _keyword_arguments(kwarg_pairs)
    options: EnqueueOptions = {"queue_name": name, "workflow_name": workflow_name}
    for key, value in (("workflow_id", workflow_id), ("priority", priority),
                       ("delay_seconds", delay_seconds),
                       ("deduplication_id", deduplication_id),
                       ("queue_partition_key", partition_key), ("app_version", app_version),
                       ("workflow_timeout", workflow_timeout)):
        if value is not None:
            options[key] = value  # type: ignore[literal-required]
    url = common.resolve_url(database_url)
    with DBOSClient(url) as client:
        handle = client.enqueue(options, *args, **kwargs)
        if wait:
            # (its outcome, or how far it got in time, is read from its row below)
            with contextlib.suppress(Exception):
                handle.get_result(wait_timeout)
    with common.opened_store(url) as store:
        row = common.get_row(store, handle.workflow_id)
    waited = wait
    data: dict[str, Any] = {"workflow_id": row.workflow_id, "queue_name": name,
                            "workflow_name": row.name, "status": row.status}
    finished = row.status in (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)
    if waited and finished:
        data["output"] = common.json_of(common.decode_value(row.output))
        data["error"] = common.error_json(row.error)
    if as_json:
        common.print_json(data)
    else:
        out = common.console()
        out.print(Text.assemble(f"workflow {row.workflow_id} ({row.name}) on queue {name!r}: ",
                                common.status_text(row.status)))
        if waited and row.status == SUCCESS:
            out.print(f"result: {common.show_value(common.decode_value(row.output), None)}")
        elif waited and finished:
            out.print(f"error: {common.show_error(row.error, None)}")
        elif waited:
            out.print(f"still {row.status} when the wait ended; follow it: "
                      f"relos workflow get {row.workflow_id}")
    if waited:
        raise SystemExit(0 if row.status == SUCCESS else 1 if finished else 2)
