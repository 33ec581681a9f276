"""The ``relos`` command line.

::

    relos demo                 # watch a workflow survive its process being killed
    relos migrate              # create or upgrade the relos schema
    relos workflow list        # inspect and operate on workflows
    relos workflow get|steps|cancel|resume|fork ...
    relos queue list           # queues, their limits and depths
    relos queue set|reset NAME # change a queue's limits at run time, or hand them back
    relos schedule list        # cron schedules; get|pause|resume|delete|trigger|backfill
    relos executors            # the executor processes, live and dead
    relos versions list        # application versions; set-latest NAME to roll back

Every command takes ``--database-url`` (or RELOS_SYSTEM_DATABASE_URL); without
it the embedded SQLite file ``relos.sqlite`` in the working directory is used.
Errors raised by relos are printed as one red ``error:`` line and exit with 1.
"""

from __future__ import annotations

from typing import Any

import click

from relos import errors
from relos.cli import common
from relos.cli.demo import demo
from relos.cli.executors import executors
from relos.cli.migrate import migrate
from relos.cli.queue import queue
from relos.cli.schedule import schedule
from relos.cli.versions import versions
from relos.cli.workflow import workflow


class RelosGroup(click.Group):
    """A group that turns relos errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.RelosError as exc:
            common.print_error(str(exc))
            ctx.exit(1)


@click.group(cls=RelosGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", "database_url", metavar="URL", envvar=common.ENV_URL,
              default=None, help=common.URL_HELP)
@click.version_option(package_name="relos", prog_name="relos")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """relos: durable workflows whose every step is recorded in a database.

    Inspect and operate on the workflows of any relos application from here;
    the application's code does not need to be importable.
    """
    ctx.obj = {"database_url": database_url}


main.add_command(demo)
main.add_command(migrate)
main.add_command(workflow)
main.add_command(queue)
main.add_command(schedule)
main.add_command(executors)
main.add_command(versions)

__all__ = ["main"]
