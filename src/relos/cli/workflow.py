"""``relos workflow ...``: list, inspect, cancel, resume and fork workflows.

Everything goes through the store: no runtime is launched and the application's
code is not imported. Resumed and forked workflows are left PENDING with no
owner; a running executor of the application picks them up at its next recovery
scan (every few seconds).
"""

from __future__ import annotations

import uuid

import click
from rich import box
from rich.table import Table
from rich.text import Text

from relos import errors
from relos.cli import common
from relos.runtime import management
from relos.store.base import (
    ALL_STATUSES,
    CANCELLED,
    DELAYED,
    ENQUEUED,
    PENDING,
    SUCCESS,
    ListFilter,
)

_RECOVERY_NOTE = (
    "A running executor of this application (executor ID {executor!r}) picks it up at its "
    "next recovery scan, within a few seconds; if none is running, the next one to launch "
    "does."
)


@click.group()
def workflow() -> None:
    """List, inspect, cancel, resume and fork workflows."""


# --- list ----------------------------------------------------------------------------------


@workflow.command("list")
@common.database_url_option
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice(sorted(ALL_STATUSES), case_sensitive=False),
              help=f"Only workflows with this status: {', '.join(sorted(ALL_STATUSES))} "
                   f"(repeatable).")
@click.option("--name", default=None, help="Only workflows of this function name.")
@click.option("--queue", "queue_name", default=None, metavar="QUEUE",
              help="Only workflows enqueued on this queue.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="At most this many workflows (0: no limit).")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Skip this many workflows first.")
@click.option("--sort", type=click.Choice(["asc", "desc"]), default="desc", show_default=True,
              help="Order by creation time.")
@click.option("--since", default=None, metavar="TIME",
              help="Only workflows created at or after this ISO 8601 time (local time "
                   "unless an offset is given).")
@click.option("--until", default=None, metavar="TIME",
              help="Only workflows created at or before this ISO 8601 time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every field of each row).")
def list_workflows(database_url: str | None, statuses: tuple[str, ...], name: str | None,
                   queue_name: str | None, limit: int, offset: int, sort: str,
                   since: str | None, until: str | None, as_json: bool) -> None:
    """List workflows, newest first."""
    flt = ListFilter(
        status=sorted({s.upper() for s in statuses}) or None,
        name=name,
        queue_name=queue_name,
        start_time=None if since is None else common.parse_time(since, "--since"),
        end_time=None if until is None else common.parse_time(until, "--until"),
        limit=limit or None,
        offset=offset or None,
        sort_desc=sort == "desc",
        load_values=as_json,
    )
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        rows = store.list_workflows(flt)
    if as_json:
        common.print_json([common.workflow_json(row) for row in rows])
        return
    out = common.console()
    if not rows:
        out.print(Text("no workflows match", style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("ID", overflow="fold", ratio=3)
    table.add_column("Name", overflow="fold", ratio=2)
    table.add_column("Status", no_wrap=True)
    table.add_column(f"Created ({common.utc_offset()})", no_wrap=True)
    table.add_column("Executor", overflow="fold", ratio=1)
    table.add_column("Recovery\nattempts", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row.workflow_id, row.name, common.status_text(row.status),
                      common.local_time(row.created_at, offset=False), row.executor_id,
                      str(row.recovery_attempts))
    out.print(table)
    if limit and len(rows) == limit:
        out.print(Text(f"showing {len(rows)} workflows from offset {offset}; "
                       f"use --limit and --offset to see more", style="dim"))


# --- get -----------------------------------------------------------------------------------


@workflow.command("get")
@click.argument("workflow_id")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every field of the row).")
def get_workflow(workflow_id: str, database_url: str | None, as_json: bool) -> None:
    """Show one workflow's status, inputs and outcome."""
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        row = common.get_row(store, workflow_id)
        n_steps = len(store.load_steps(workflow_id))
    if as_json:
        common.print_json(common.workflow_json(row))
        return
    table = Table(box=box.SIMPLE, show_header=False, title=f"workflow {row.workflow_id}",
                  title_justify="left", title_style="bold")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("ID", row.workflow_id)
    table.add_row("Name", row.name)
    table.add_row("Status", common.status_text(row.status))
    table.add_row("Inputs", common.show_inputs(common.decode_inputs(row.inputs), 2000))
    if row.output is not None:
        table.add_row("Output", common.show_value(common.decode_value(row.output), 2000))
    if row.error is not None:
        table.add_row("Error", Text(common.show_error(row.error, 2000), style="red"))
    table.add_row("Created", common.local_time(row.created_at, "milliseconds"))
    table.add_row("Updated", common.local_time(row.updated_at, "milliseconds"))
    if row.completed_at is not None:
        table.add_row("Completed", common.local_time(row.completed_at, "milliseconds"))
    table.add_row("Executor", row.executor_id)
    table.add_row("Owner", row.owner or "-")
    table.add_row("Recovery attempts", str(row.recovery_attempts))
    table.add_row("Steps recorded", str(n_steps))
    optional = [
        ("Application", row.application_id), ("Application version", row.application_version),
        ("Queue", row.queue_name), ("Priority", str(row.priority) if row.priority else None),
        ("Deduplication ID", row.deduplication_id), ("Parent", row.parent_workflow_id),
        ("Forked from", row.forked_from), ("Authenticated user", row.authenticated_user),
        ("Assumed role", row.assumed_role),
        ("Timeout", f"{row.timeout_ms} ms" if row.timeout_ms is not None else None),
        ("Deadline", common.local_time(row.deadline_epoch_ms, "milliseconds")
         if row.deadline_epoch_ms is not None else None),
    ]
    for label, value in optional:
        if value is not None:
            table.add_row(label, value)
    out = common.console()
    out.print(table)
    out.print(Text(f"steps: relos workflow steps {row.workflow_id}", style="dim"))


# --- steps ---------------------------------------------------------------------------------


@workflow.command("steps")
@click.argument("workflow_id")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_steps(workflow_id: str, database_url: str | None, as_json: bool) -> None:
    """Show the steps a workflow recorded, in order."""
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        row = common.get_row(store, workflow_id)
        steps = sorted(store.load_steps(workflow_id).values(), key=lambda s: s.function_id)
    if as_json:
        common.print_json([common.step_json(s) for s in steps])
        return
    out = common.console()
    if not steps:
        out.print(Text(f"workflow {workflow_id} ({row.status}) has recorded no steps yet",
                       style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"steps of workflow "
                  f"{workflow_id} ({row.name}, {row.status})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Name", overflow="fold", min_width=10)
    table.add_column("Kind", overflow="fold", min_width=4)
    table.add_column(f"Output / error (times {common.utc_offset()})", overflow="fold",
                     min_width=12)
    table.add_column("Duration\n(ms)", justify="right", min_width=8)
    for s in steps:
        table.add_row(str(s.function_id), s.function_name, s.kind, common.step_detail(s),
                      str(s.completed_at - s.started_at))
    out.print(table)


# --- cancel --------------------------------------------------------------------------------


@workflow.command("cancel")
@click.argument("workflow_id")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def cancel_workflow(workflow_id: str, database_url: str | None, as_json: bool) -> None:
    """Cancel a PENDING or ENQUEUED workflow.

    The process running it notices within about a second and stops it at its
    next step or wait. `relos workflow resume` continues it later.
    """
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        row = common.get_row(store, workflow_id)
        changed = store.set_workflow_status(workflow_id, CANCELLED, common.now_ms(store),
                                            only_if=frozenset({PENDING, ENQUEUED, DELAYED}))
        after = common.get_row(store, workflow_id)
    if as_json:
        common.print_json({"workflow_id": workflow_id, "cancelled": changed,
                           "previous_status": row.status, "status": after.status})
        return
    out = common.console()
    if changed:
        out.print(Text.assemble(f"workflow {workflow_id} is now ", common.status_text(CANCELLED),
                                f" (was {row.status})."))
        out.print("The process running it stops it at its next step or wait; "
                  f"`relos workflow resume {workflow_id}` continues it later.")
    elif after.status == CANCELLED:
        out.print(f"workflow {workflow_id} was already cancelled; nothing to do.")
    else:
        out.print(Text.assemble(f"workflow {workflow_id} has already finished (",
                                common.status_text(after.status), "); nothing to cancel."))


# --- resume --------------------------------------------------------------------------------


@workflow.command("resume")
@click.argument("workflow_id")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def resume_workflow(workflow_id: str, database_url: str | None, as_json: bool) -> None:
    """Run a cancelled, failed or dead-lettered workflow again.

    The workflow becomes PENDING with no owner; an executor of the application
    replays its recorded steps and continues from the first one not recorded.
    """
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        row = common.get_row(store, workflow_id)
        changed = False
        if row.status not in (SUCCESS, PENDING):
            changed = store.resume_workflow(workflow_id, common.now_ms(store))
        after = common.get_row(store, workflow_id)
        n_steps = len(store.load_steps(workflow_id))
    if as_json:
        common.print_json({"workflow_id": workflow_id, "resumed": changed,
                           "previous_status": row.status, "status": after.status,
                           "executor_id": after.executor_id, "recorded_steps": n_steps})
        return
    out = common.console()
    if changed:
        out.print(Text.assemble(f"workflow {workflow_id} is ", common.status_text(PENDING),
                                f" again (was {row.status}). "))
        out.print(_RECOVERY_NOTE.format(executor=after.executor_id) + " It replays its "
                  f"{n_steps} recorded step(s) and continues from the first one not recorded.")
    elif after.status == SUCCESS:
        out.print(Text.assemble(f"workflow {workflow_id} already finished with ",
                                common.status_text(SUCCESS), "; nothing to resume."))
    elif after.status == PENDING:
        out.print(Text.assemble(f"workflow {workflow_id} is already ",
                                common.status_text(PENDING), ": its executor is running it, "
                                "or will recover it if its process died; nothing to resume."))
    else:  # changed by someone else in between
        out.print(Text.assemble(f"workflow {workflow_id} is now ",
                                common.status_text(after.status), "; it was not resumed."))


# --- fork ----------------------------------------------------------------------------------


@workflow.command("fork")
@click.argument("workflow_id")
@click.option("--step", "start_step", required=True, type=click.IntRange(min=0), metavar="N",
              help="The first step to run anew; the steps before it are replayed from the "
                   "original's records (see `relos workflow steps ID`).")
@click.option("--new-id", default=None, help="The new workflow's ID (default: a random UUID).")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def fork_workflow(workflow_id: str, start_step: int, new_id: str | None,
                  database_url: str | None, as_json: bool) -> None:
    """Start a copy of a workflow, with the same inputs, from step N.

    The copy replays the original's recorded steps before N and runs the rest
    anew (after a bug fix, for example). It is created PENDING; an executor of
    the application runs it.
    """
    if new_id is not None and not new_id:
        raise errors.ConfigError("--new-id must not be empty")
    url = common.resolve_url(database_url)
    with common.opened_store(url) as store:
        src = common.get_row(store, workflow_id)
        fork_id = new_id or str(uuid.uuid4())
        new = management.fork_row(src, fork_id, common.now_ms(store))
        store.fork_workflow(workflow_id, fork_id, start_step, new)
        copied = sum(1 for fid in store.load_steps(fork_id) if fid < start_step)
    if as_json:
        common.print_json({"workflow_id": fork_id, "forked_from": workflow_id,
                           "start_step": start_step, "copied_steps": copied,
                           "status": PENDING, "executor_id": new.executor_id})
        return
    out = common.console()
    out.print(Text.assemble("forked workflow ", (workflow_id, "bold"), " into ",
                            (fork_id, "bold"), f" from step {start_step} ({copied} recorded "
                            f"step(s) copied), status ", common.status_text(PENDING), "."))
    out.print(_RECOVERY_NOTE.format(executor=new.executor_id))
    out.print(Text(f"follow it: relos workflow get {fork_id}", style="dim"))
