"""``relos queue list``: the queues, their limits and how much work waits in each."""

from __future__ import annotations

from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from relos.cli import common


@click.group()
def queue() -> None:
    """Inspect queues."""


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
            "name": name,
            "concurrency": q.concurrency if q else None,
            "worker_concurrency": q.worker_concurrency if q else None,
            "rate_limit": q.rate_limit if q else None,
            "rate_period_seconds": q.rate_period_ms / 1000 if q and q.rate_period_ms else None,
            "started_in_period": started.get(name),
            "priority_enabled": q.priority_enabled if q else False,
            "partitioned": q.partitioned if q else False,
            "defined_by": q.defined_by if q else None,
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
