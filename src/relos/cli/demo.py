"""``relos demo``: a durable workflow survives its process being killed.

The parent process (this command) never runs workflow code. It starts the
reminder workflow of :mod:`relos.demo_app` in a child process, watches the
database until the workflow is sleeping, kills the child with SIGKILL, starts a
second child (which recovers the PENDING workflow when it launches) and then
reads the database to show what happened: each email sent once, the recorded
steps, the status history, and a sleep that was not restarted from zero.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from relos import errors
from relos.cli import common
from relos.store import parse_url
from relos.store.base import SUCCESS, StepRow, SystemStore, WorkflowRow
from relos.store.sql import SQLStore

EXECUTOR_ID = "local"
EMAIL = "ada@example.com"
CONFIRMATION = "confirmation email to"
REMINDER = "reminder email to"


class DemoError(errors.RelosError):
    """The demo could not run to the end."""


@dataclass
class _Child:
    """A child process running the demo app, its output echoed with a prefix."""

    number: int
    proc: subprocess.Popen[str]
    out: Console
    pump: threading.Thread = field(init=False)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pump = threading.Thread(target=self._echo, daemon=True)
        self.pump.start()

    def _echo(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.print(Text.assemble((f"  process {self.number} │ ", "cyan"),
                                         line.rstrip("\n")), soft_wrap=True)
            self.lines.append(line)

    def wait_for_output(self, text: str, timeout: float) -> None:
        """Give the echo a moment to show a line the child has printed (or is about to)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines) and time.monotonic() < deadline:
            time.sleep(0.01)

    def finish(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self.pump.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()  # reap it, so its PID is gone and its workflows can be recovered


@dataclass
class _Check:
    what: str
    ok: bool
    detail: str


class _Demo:
    def __init__(self, out: Console, url: str, workdir: Path, sleep_s: int) -> None:
        self.out = out
        self.url = url
        self.workdir = workdir
        self.sleep_s = sleep_s
        self.outbox = workdir / "outbox.txt"
        self.workflow_id = f"demo-{uuid.uuid4().hex[:8]}"
        self.children: list[_Child] = []
        self.killed_at = 0

    # --- processes -------------------------------------------------------------------------

    def spawn(self, number: int, *args: str) -> _Child:
        env = dict(os.environ)
        env.update({
            common.ENV_URL: self.url,
            "RELOS_EXECUTOR_ID": EXECUTOR_ID,
            "RELOS_DEMO_OUTBOX": str(self.outbox),
            "RELOS_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        argv = [sys.executable, "-m", "relos.demo_app", *args,
                "--database-url", self.url, "--workflow-id", self.workflow_id]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        child = _Child(number, proc, self.out)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            child.kill()

    # --- the story -------------------------------------------------------------------------

    def say(self, *parts: str | Text | tuple[str, str]) -> None:
        self.out.print(Padding(Text.assemble(*parts), (0, 0, 0, 2), expand=False))

    def section(self, title: str) -> None:
        self.out.print()
        self.out.print(Rule(Text(title, style="bold"), align="left", style="dim"))

    def run(self) -> list[_Check]:
        with common.opened_store(self.url, must_exist=False) as store:
            store.migrate()  # fails here, before any output, if the database is unusable
            self._introduce()
            self._first_process(store)
            self._second_process()
            return self._report(store)

    def _introduce(self) -> None:
        from relos import demo_app

        o = self.out
        o.print(Rule(Text("relos demo: a workflow that survives a crash", style="bold")))
        self.say("This runs the reminder workflow below in a child process, kills that "
                 "process with SIGKILL in the middle of its ", (f"{self.sleep_s} s", "bold"),
                 " durable sleep, and lets a second process finish it. Every step is "
                 "recorded in the database, so nothing is lost and nothing runs twice.")
        o.print()
        source = inspect.getsource(demo_app.reminder_workflow).rstrip()
        o.print(Padding(Syntax(source, "python", theme="ansi_dark", background_color="default"),
                        (0, 0, 0, 4), expand=False))
        o.print()
        self.say(("database ", "dim"), common.describe_url(self.url))
        self.say(("outbox   ", "dim"), str(self.outbox),
                 ("  (the steps 'send' email by appending a line here)", "dim"))

    def _first_process(self, store: SystemStore) -> None:
        self.section("1. process 1 starts the workflow")
        self.say("Command: ", ("python -m relos.demo_app run ...", "bold"),
                 f" (workflow ID {self.workflow_id}, sleep {self.sleep_s} s)")
        child = self.spawn(1, "run", "--sleep", str(self.sleep_s), "--email", EMAIL)
        sleep_step = self._wait_for_sleep(store, child)
        child.wait_for_output("sent confirmation", 1.0)
        wake = common.wake_up_ms(sleep_step) or sleep_step.started_at + self.sleep_s * 1000
        self.say("The workflow is sleeping: ", ("DBOS.sleep", "bold"),
                 f" recorded its wake-up time ({common.clock(wake)}) in the database.")
        kill_at = sleep_step.started_at + min(1000, self.sleep_s * 1000 // 3)
        while (remaining := kill_at - common.now_ms()) > 0:
            time.sleep(remaining / 1000)

        self.section("2. crash")
        child.kill()
        self.killed_at = common.now_ms()
        into = (self.killed_at - sleep_step.started_at) / 1000
        self.say(("Killed process 1", "bold red"), f" (pid {child.proc.pid}) with SIGKILL, "
                 f"{into:.1f} s into its {self.sleep_s} s sleep: no cleanup, no goodbye.")
        row = common.get_row(store, self.workflow_id)
        if row.status != "PENDING":
            raise DemoError(
                f"process 1 finished the workflow ({row.status}) before it could be killed; "
                f"try a longer --sleep"
            )
        self.say("In the database the workflow is still ", common.status_text(row.status),
                 ", owned by a process that no longer exists.")

    def _wait_for_sleep(self, store: SystemStore, child: _Child) -> StepRow:
        deadline = time.monotonic() + 60
        while True:
            for step in store.load_steps(self.workflow_id).values():
                if step.kind == "DBOS.sleep":
                    return step
            code = child.proc.poll()
            if code is not None:
                child.finish()
                raise DemoError(f"process 1 exited with code {code} before the workflow "
                                f"reached its sleep (its output is above)")
            if time.monotonic() > deadline:
                raise DemoError("process 1 did not reach the sleep within 60 s")
            time.sleep(0.02)

    def _second_process(self) -> None:
        self.section("3. process 2 launches relos")
        self.say("Command: ", ("python -m relos.demo_app wait ...", "bold"),
                 " At launch relos recovers the PENDING workflows of its executor "
                 f"(ID {EXECUTOR_ID!r}) whose owner process is gone; then this process waits "
                 "for the result with ", ("DBOS.retrieve_workflow(id).get_result()", "bold"),
                 ".")
        child = self.spawn(2, "wait", "--timeout", str(self.sleep_s + 60))
        try:
            code = child.finish(timeout=self.sleep_s + 90)
        except subprocess.TimeoutExpired:
            child.kill()
            raise DemoError("process 2 did not finish in time") from None
        if code != 0:
            raise DemoError(f"process 2 exited with code {code} (its output is above)")

    # --- what the database says ------------------------------------------------------------

    def _report(self, store: SystemStore) -> list[_Check]:
        row = common.get_row(store, self.workflow_id)
        steps = sorted(store.load_steps(self.workflow_id).values(), key=lambda s: s.function_id)
        history = self._history(store)
        pids = {c.proc.pid: c.number for c in self.children}
        owners = {r[1] for r in history if r[1]}
        process_of = {e.instance_id: pids.get(e.pid) for e in store.get_executors(list(owners))}
        t0 = row.created_at

        def at(ms: int) -> str:
            return f"{common.clock(ms)}  (+{(ms - t0) / 1000:.3f} s)"

        def who(owner: str | None) -> str:
            n = process_of.get(owner or "")
            return f"process {n}" if n else (owner or "-")

        self.section("4. what happened")
        lines = self.outbox.read_text("utf-8").splitlines() if self.outbox.exists() else []
        self.say(("The outbox", "bold"), f" ({len(lines)} emails):")
        for line in lines:
            self.say("  ", line)
        confirmations = sum(CONFIRMATION in line for line in lines)
        reminders = sum(REMINDER in line for line in lines)

        self.out.print()
        table = Table(title=f"steps recorded in the database (times from the workflow's start "
                      f"at {common.clock(t0)})", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        table.add_column("#", justify="right")
        table.add_column("step", no_wrap=True)
        table.add_column("started", justify="right", no_wrap=True)
        table.add_column("ms", justify="right")
        table.add_column("run by", no_wrap=True)
        table.add_column("recorded output", overflow="fold")
        for s in steps:
            by = "process 1" if s.completed_at <= self.killed_at else "process 2"
            wake = common.wake_up_ms(s)
            detail = (Text(f"until {common.clock(wake)}") if wake is not None
                      else common.step_detail(s, 40))
            table.add_row(str(s.function_id), s.function_name,
                          f"+{(s.started_at - t0) / 1000:.3f} s",
                          str(s.completed_at - s.started_at), by, detail)
        self.out.print(Padding(table, (0, 0, 0, 2), expand=False))

        table = Table(title="workflow status history (every change, appended by a trigger)",
                      title_justify="left", box=box.SIMPLE_HEAD)
        for name in ("status", "owner", "at", "meaning"):
            table.add_column(name)
        previous: str | None = None
        for i, (status, owner, when) in enumerate(history):
            if i == 0:
                meaning = f"{who(owner)} started it"
            elif status == "PENDING" and owner != previous:
                meaning = f"{who(owner)} recovered it"
            elif status == SUCCESS:
                meaning = "it finished"
            else:
                meaning = ""
            previous = owner
            table.add_row(common.status_text(status), who(owner), at(int(when)), meaning)
        self.out.print(Padding(table, (0, 0, 0, 2), expand=False))

        return self._checks(row, steps, history, process_of, confirmations, reminders)

    def _history(self, store: SystemStore) -> list[tuple[str, str | None, int]]:
        if not isinstance(store, SQLStore):
            return []
        sql = (f"SELECT status, owner, at FROM {store.prefix}workflow_status_history "
               f"WHERE workflow_id = {store._ph('w')} ORDER BY id")
        return [(str(r[0]), r[1], int(r[2])) for r in store._all(sql, {"w": self.workflow_id})]

    def _checks(self, row: WorkflowRow, steps: list[StepRow],
                history: list[tuple[str, str | None, int]], process_of: dict[str, Any],
                confirmations: int, reminders: int) -> list[_Check]:
        checks = [
            _Check("confirmation email sent exactly once", confirmations == 1,
                   _times(confirmations)),
            _Check("reminder email sent exactly once", reminders == 1,
                   _times(reminders)),
            _Check("workflow finished with status SUCCESS", row.status == SUCCESS,
                   f"status {row.status}, result "
                   f"{common.show_value(common.decode_value(row.output))}"),
        ]
        resumed = next((when for status, owner, when in history
                        if status == "PENDING" and process_of.get(owner or "") == 2), None)
        checks.append(_Check("process 2 took the workflow over", resumed is not None,
                             f"at +{(resumed - row.created_at) / 1000:.3f} s"
                             if resumed is not None else
                             "no claim by process 2 in the status history"))
        sleep = next((s for s in steps if s.kind == "DBOS.sleep"), None)
        reminder = next((s for s in steps if s.function_name.endswith("send_reminder_email")),
                        None)
        wake = common.wake_up_ms(sleep) if sleep is not None else None
        sleep_ms = self.sleep_s * 1000
        if resumed is not None and reminder is not None and wake is not None:
            not_restarted = reminder.started_at < resumed + sleep_ms
            self.out.print()
            if resumed < wake:
                rest = f"slept only the remaining {(wake - resumed) / 1000:.1f} s"
            else:
                rest = "found the wake-up time already past, so went straight on"
            headline = ("The sleep was not restarted from zero." if not_restarted
                        else "The sleep was restarted from zero!")
            self.say((headline, "bold" if not_restarted else "bold red"),
                     f" Process 1 recorded the wake-up time {common.clock(wake)}; process 2 "
                     f"took over at {common.clock(resumed)}, {rest}, and sent the reminder at "
                     f"{common.clock(reminder.started_at)} "
                     f"({(reminder.started_at - wake) / 1000:+.3f} s from the recorded "
                     f"wake-up). Restarting the sleep would have meant "
                     f"{common.clock(resumed + sleep_ms)} or later.")
            if row.completed_at is not None:
                self.say(f"Start to finish the workflow took "
                         f"{(row.completed_at - row.created_at) / 1000:.1f} s for a "
                         f"{self.sleep_s} s sleep, across two processes and a crash.")
            checks.append(_Check("sleep resumed, not restarted", not_restarted,
                                 f"reminder {(reminder.started_at - wake) / 1000:+.3f} s "
                                 f"from the recorded wake-up"))
        else:
            checks.append(_Check("sleep resumed, not restarted", False,
                                 "the sleep, the reminder or the takeover is not recorded"))
        return checks


def _times(n: int) -> str:
    return f"sent {n} time" if n == 1 else f"sent {n} times"


@click.command()
@common.database_url_option
@click.option("--sleep", "sleep_s", type=click.IntRange(min=1, max=3600), default=3,
              show_default=True, metavar="SECONDS",
              help="How long the workflow sleeps (process 1 is killed during the sleep).")
@click.option("--keep", is_flag=True,
              help="Keep the demo database (and outbox) to explore it with `relos workflow`.")
def demo(database_url: str | None, sleep_s: int, keep: bool) -> None:
    """Watch a durable workflow survive its process being killed.

    Runs the reminder workflow (confirmation email, durable sleep, reminder
    email) on a fresh embedded SQLite database in a temporary directory, kills
    its process with SIGKILL during the sleep, and lets a second process finish
    it. Exits with 0 only if each email was sent exactly once and the workflow
    succeeded.
    """
    out = common.console()
    out.width = min(out.width, 100)  # paragraphs wider than this are hard to read
    started = time.monotonic()
    given = common.resolve_url(database_url)
    if given:
        parse_url(given)  # a malformed URL fails before anything is created
    workdir = Path(tempfile.mkdtemp(prefix="relos-demo-"))
    url = given or f"sqlite:///{workdir / 'relos-demo.sqlite'}"
    run = _Demo(out, url, workdir, sleep_s)
    try:
        checks = run.run()
    finally:
        run.stop_all()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)

    out.print()
    failed = [c for c in checks if not c.ok]
    for c in checks:
        mark = ("✓", "green") if c.ok else ("✗", "bold red")
        run.say(mark, f" {c.what}", (f"  ({c.detail})", "dim"))
    out.print()
    if keep or given:
        where = common.describe_url(url) if given else f"the demo files in {workdir}"
        run.say(f"Kept {where}. Explore what was recorded:")
        for cmd in (f"export {common.ENV_URL}='{url}'", "relos workflow list",
                    f"relos workflow get {run.workflow_id}",
                    f"relos workflow steps {run.workflow_id}"):
            out.print(Text(f"    {cmd}", style="bold"), soft_wrap=True)
    else:
        run.say(("Removed the demo database; run with --keep to explore it with ", "dim"),
                ("relos workflow list", "dim bold"), (" and ", "dim"),
                ("relos workflow steps", "dim bold"), (".", "dim"))
    elapsed = time.monotonic() - started
    out.print()
    if failed:
        common.print_error("demo FAILED: " + "; ".join(f"{c.what} ({c.detail})" for c in failed))
        sys.exit(1)
    out.print(Text.assemble(("demo passed", "bold green"),
                            f" in {elapsed:.1f} s: the crash lost nothing and repeated nothing."))
