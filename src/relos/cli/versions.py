"""``relos versions list|set-latest``: the application versions executors
have launched with, and which one is the latest.

Only executors running the latest version dequeue the workflows enqueued
without an explicit version; ``set-latest`` makes an older version the latest
again (a rollback). Running executors notice within about a second.
"""

from __future__ import annotations

from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from relos import errors
from relos.cli import common
from relos.store.base import ApplicationVersion


@click.group()
def versions() -> None:
    """Inspect application versions and choose the latest."""


def _json_of(v: ApplicationVersion, latest: bool) -> dict[str, Any]:
    return {"version_name": v.version_name, "version_timestamp": v.version_timestamp,
            "created_at": v.created_at, "latest": latest}


@versions.command("list")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_versions(database_url: str | None, as_json: bool) -> None:
    """Every application version, the latest first."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        rows = store.list_application_versions()
    if as_json:
        common.print_json([_json_of(v, i == 0) for i, v in enumerate(rows)])
        return
    out = common.console()
    if not rows:
        out.print(Text("no application versions: one is recorded when an executor launches",
                       style="dim"))
        return
    offset = common.utc_offset()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Version", "Latest", f"Timestamp ({offset})", f"First seen ({offset})"):
        table.add_column(column, overflow="fold")
    for i, v in enumerate(rows):
        table.add_row(v.version_name, Text("latest", style="green") if i == 0 else "",
                      common.local_time(v.version_timestamp, offset=False),
                      common.local_time(v.created_at, offset=False))
    out.print(table)


@versions.command("set-latest")
@click.argument("name")
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def set_latest(name: str, database_url: str | None, as_json: bool) -> None:
    """Make version NAME the latest: from then on only its executors dequeue
    workflows enqueued without a version (e.g. to roll back a deploy)."""
    with common.opened_store(common.resolve_url(database_url)) as store:
        if not store.set_latest_application_version(name, common.now_ms(store)):
            known = [v.version_name for v in store.list_application_versions()]
            raise errors.ApplicationVersionNotFoundError(name, known)
        rows = store.list_application_versions()
    if as_json:
        [row] = [v for v in rows if v.version_name == name]
        common.print_json(_json_of(row, rows[0].version_name == name))
        return
    common.console().print(f"application version {name!r} is now the latest")
