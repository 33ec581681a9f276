"""The reminder application that ``relos demo`` runs (and kills, and recovers).

A workflow that sends a confirmation email, sleeps durably, then sends a
reminder. "Sending" appends a line to the outbox file named by the
RELOS_DEMO_OUTBOX environment variable (and prints it), so the demo can count
how many times each email went out.

Run it by hand::

    python -m relos.demo_app run --workflow-id my-reminder --sleep 10
    # press Ctrl-C (or kill -9 it) during the sleep, then:
    python -m relos.demo_app wait --workflow-id my-reminder

``run`` launches relos and starts the workflow; ``wait`` launches relos, which
recovers the unfinished workflow by itself, and waits for its result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys

from relos import DBOS, SetWorkflowID
from relos.errors import RelosError

OUTBOX_ENV = "RELOS_DEMO_OUTBOX"


def _send(kind: str, email: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    line = f"{stamp}  {kind} email to {email}"
    outbox = os.environ.get(OUTBOX_ENV)
    if outbox:
        with open(outbox, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    print(f"sent {kind} email to {email} (workflow {DBOS.workflow_id})", flush=True)


@DBOS.step()
def send_confirmation_email(email: str) -> None:
    _send("confirmation", email)


@DBOS.step()
def send_reminder_email(email: str) -> None:
    _send("reminder", email)


@DBOS.workflow()
def reminder_workflow(email: str, time_to_sleep: int) -> str:
    send_confirmation_email(email)
    DBOS.sleep(time_to_sleep)
    send_reminder_email(email)
    return f"reminded {email}"


# --- the command line the demo drives --------------------------------------------------------


def _launch(database_url: str | None) -> None:
    log = logging.getLogger("relos")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("relos %(levelname)s: %(message)s"))
        log.addHandler(handler)
    config: dict[str, object] = {"name": "relos-demo", "executor_id": "local"}
    if database_url:
        config["system_database_url"] = database_url
    DBOS(config=config)
    DBOS.launch()


def _run(args: argparse.Namespace) -> str:
    _launch(args.database_url)
    print(f"launched relos (pid {os.getpid()}); starting workflow {args.workflow_id}",
          flush=True)
    with SetWorkflowID(args.workflow_id):
        handle = DBOS.start_workflow(reminder_workflow, args.email, args.sleep)
    result: str = handle.get_result()
    return result


def _wait(args: argparse.Namespace) -> str:
    _launch(args.database_url)
    print(f"launched relos (pid {os.getpid()}); it recovers this executor's pending "
          f"workflows by itself. Waiting for workflow {args.workflow_id}...", flush=True)
    handle = DBOS.retrieve_workflow(args.workflow_id)
    result: str = handle.get_result(timeout_seconds=args.timeout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relos.demo_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("run", "start the reminder workflow and wait for its result"),
                           ("wait", "recover pending workflows and wait for one's result")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--database-url", default=None,
                       help="system database URL (default: RELOS_SYSTEM_DATABASE_URL or "
                            "the SQLite file relos.sqlite)")
        p.add_argument("--workflow-id", required=True)
        if name == "run":
            p.add_argument("--email", default="ada@example.com")
            p.add_argument("--sleep", type=int, default=3, help="seconds to sleep durably")
        else:
            p.add_argument("--timeout", type=float, default=120.0,
                           help="seconds to wait for the result")
    args = parser.parse_args(argv)
    try:
        result = _run(args) if args.command == "run" else _wait(args)
        print(f"workflow {args.workflow_id} returned {result!r}", flush=True)
        return 0
    except (RelosError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    sys.exit(main())
