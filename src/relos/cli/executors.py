"""``relos executors``: the processes of the cluster, like ``ps`` for relos."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table
from rich.text import Text

from relos.cli import common
from relos.runtime import liveness

_STYLE = {"live": "green", "dead": "red", "stopped": "dim"}


@click.command()
@common.database_url_option
@click.option("--all", "show_all", is_flag=True,
              help="Also list executors that stopped cleanly.")
@click.option("--lease", default=10.0, show_default=True, metavar="SECONDS",
              help="Heartbeat age after which an executor on another host counts as dead "
                   "(use the executors' executor_lease_seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def executors(database_url: str | None, show_all: bool, lease: float, as_json: bool) -> None:
    """Executor processes, live and dead, with their heartbeats.

    A dead executor's PENDING workflows are taken over by a live executor of the
    same executor ID; on this host an executor is dead as soon as its process
    is gone, elsewhere once its heartbeat is older than the lease.
    """
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        rows = store.get_executors()
        pending = {r.instance_id: 0 for r in rows}
        for _wid, owner, _version in store.find_recoverable(sorted({r.executor_id
                                                                    for r in rows})):
            if owner in pending:
                pending[owner] += 1
        now = store.clock_ms()  # (heartbeats are the database's time)
    listed = []
    for r in rows:
        st = liveness.state(r, now, lease)
        if st == "stopped" and not show_all:
            continue
        listed.append((r, st))
    if as_json:
        common.print_json([{
            "instance_id": r.instance_id, "executor_id": r.executor_id, "state": st,
            "application_version": r.application_version, "hostname": r.hostname,
            "pid": r.pid, "started_at": r.started_at, "heartbeat_at": r.heartbeat_at,
            "stopped_at": r.stopped_at, "pending_workflows": pending.get(r.instance_id, 0),
            "queues": r.queue_names(),
        } for r, st in listed])
        return
    out = common.console()
    if not listed:
        out.print(Text("no executors" + ("" if show_all else " running (--all shows stopped "
                                                             "ones)"), style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Instance", "Executor", "State", "Host", "PID", "Version", "Heartbeat",
                   "Pending", "Queues"):
        table.add_column(column, justify="right" if column in ("PID", "Pending") else "left",
                         no_wrap=column in ("Instance", "State", "PID", "Heartbeat"))
    for r, st in listed:
        age = f"{(now - r.heartbeat_at) / 1000:.0f}s ago"
        table.add_row(r.instance_id[:8], r.executor_id, Text(st, style=_STYLE[st]), r.hostname,
                      str(r.pid), (r.application_version or "-")[:8], age,
                      str(pending.get(r.instance_id, 0)), _queues(r.queue_names()))
    out.print(table)


def _queues(names: list[str] | None) -> str:
    """The queues an executor dequeues from, for the table."""
    if names is None:
        return "all"
    return ", ".join(names) if names else "none (enqueues only)"
