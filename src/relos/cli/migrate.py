"""``relos migrate``: create or upgrade the relos schema of a database."""

from __future__ import annotations

import click
from rich.text import Text

from relos.cli import common


@click.command()
@common.database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def migrate(database_url: str | None, as_json: bool) -> None:
    """Apply every schema migration the database does not have yet.

    Safe to run at any time and from several processes at once (applications
    also migrate when they launch). A PostgreSQL database that does not exist
    yet is created.
    """
    url = common.resolve_url(database_url)
    with common.opened_store(url, must_exist=False) as store:
        applied = store.migrate()
        version = store.schema_version()
    if as_json:
        common.print_json({"database": common.describe_url(url), "backend": store.backend,
                           "applied": applied, "version": version})
        return
    out = common.console()
    where = common.describe_url(url)
    if applied:
        listed = ", ".join(str(v) for v in applied)
        noun = "migration" if len(applied) == 1 else "migrations"
        out.print(Text.assemble(("applied ", ""), (f"{noun} {listed}", "green"),
                                f" to the {where}; the schema is now at version {version}"))
    else:
        out.print(Text.assemble(("schema is up to date", "green"),
                                f" (version {version}) in the {where}"))
