"""Running a test application in real subprocesses: spawn, watch, SIGKILL, reap.

The applications (``tests/integration/*_app.py``) append one line per side
effect to a log (``event workflow_id pid time``); :class:`Processes` reads it
back as :class:`Event` values so tests count executions exactly, and polls for
the moment to act with :meth:`Processes.wait_for`, failing at once when a
watched process dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relos.store import SystemStore, open_store


@dataclass(frozen=True)
class Event:
    name: str
    workflow_id: str
    pid: int
    #: When it happened, in the unit the application logs (ms or ns).
    at: int


class Processes:
    """The processes of one test, with their outputs, the effect log and a store."""

    def __init__(self, url: str, tmp_path: Path, app: Path, deadline: float,
                 poll: float) -> None:
        self.url = url
        self.dir = tmp_path
        self.app = app
        self.deadline = deadline
        self.poll = poll
        self.log = tmp_path / "effects.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self._outputs: dict[int, tuple[Path, Path]] = {}
        self._store: SystemStore | None = None

    # --- processes --------------------------------------------------------------------

    def start(self, mode: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Run ``app url <args>`` with no RELOS_* settings from this environment."""
        n = len(self.procs)
        out, err = self.dir / f"proc{n}-{mode}.out", self.dir / f"proc{n}-{mode}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELOS_")}
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen([sys.executable, str(self.app), self.url, *args],
                                    stdout=fout, stderr=ferr, env=env, cwd=self.dir)
        self.procs.append(proc)
        self._outputs[proc.pid] = (out, err)
        return proc

    def stdout_lines(self, proc: subprocess.Popen[bytes]) -> list[str]:
        return self._outputs[proc.pid][0].read_text().splitlines()

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        return self._outputs[proc.pid][1].read_text(errors="replace")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and reap it: when this returns it is gone for good,
        and so are its PostgreSQL sessions (a commit the server was finishing
        for it has landed or not, for good)."""
        assert proc.poll() is None, (
            f"process {proc.pid} exited early ({proc.returncode}):\n{self.stderr(proc)}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=self.deadline) == -signal.SIGKILL
        if self.url.startswith("postgresql"):
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                self.wait_for(lambda: conn.execute(
                    "SELECT COUNT(*) = 0 FROM pg_stat_activity WHERE application_name = %s",
                    (f"relos:{proc.pid}",)).fetchone()[0],
                    f"the server to end the sessions of killed process {proc.pid}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._store is not None:
            self._store.close()

    # --- observation ------------------------------------------------------------------

    def events(self, name: str | None = None, workflow_id: str | None = None,
               pid: int | None = None) -> list[Event]:
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:  # a line being written right now: complete it next poll
                continue
            ev = Event(parts[0], parts[1], int(parts[2]), int(parts[3]))
            if ((name is None or ev.name == name)
                    and (workflow_id is None or ev.workflow_id == workflow_id)
                    and (pid is None or ev.pid == pid)):
                found.append(ev)
        return found

    def count(self, name: str, workflow_id: str | None = None, pid: int | None = None) -> int:
        return len(self.events(name, workflow_id, pid))

    def wait_for(self, check: Callable[[], Any], what: str,
                 *watch: subprocess.Popen[bytes],
                 explain: Callable[[], str] | None = None) -> Any:
        """Poll ``check`` until it returns something truthy (returned), failing
        after the deadline or as soon as a watched process dies. On a time-out
        the failure shows what ``explain`` returns and each watched process's
        stderr, with its threads' stacks where the application registered
        ``faulthandler`` for SIGUSR1."""
        end = time.monotonic() + self.deadline
        while True:
            value = check()
            if value:
                return value
            for proc in watch:
                if proc.poll() is not None:
                    pytest.fail(f"process {proc.pid} exited ({proc.returncode}) while waiting "
                                f"for {what}:\n{self.stderr(proc)}")
            if time.monotonic() > end:
                state = f"\n{explain()}" if explain is not None else ""
                for proc in watch:
                    os.kill(proc.pid, signal.SIGUSR1)
                time.sleep(0.5)  # (for the stacks to be written)
                extra = "".join(f"\nstderr of {p.pid}:\n{self.stderr(p)}" for p in watch)
                pytest.fail(f"timed out after {self.deadline}s waiting for {what}{state}{extra}")
            time.sleep(self.poll)

    def store(self) -> SystemStore:
        if self._store is None:
            self._store = open_store(self.url)
        return self._store
