"""Suspended workflows survive the death of the process that suspended them: a
real process suspends a sleeping and a receiving workflow, is killed with
SIGKILL, and a new process with another executor ID resumes both (the sleeper
no earlier than its wake-up time, the receiver when its message arrives),
without re-running the steps done before the suspension and without counting
a recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dbhelpers import eventually
from relos.store import open_store
from relos.store.base import PENDING

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("suspend_app.py")
SLEEPER, RECEIVER = "susp-crash-sleeper", "susp-crash-receiver"


def _events(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            found.append((parts[0], parts[1], int(parts[2])))
    return found


def test_a_killed_process_s_suspended_workflows_resume_in_another(db_url, tmp_path):
    log = tmp_path / "effects.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELOS_")}
    err = tmp_path / "starter.err"
    with open(err, "wb") as ferr:
        starter = subprocess.Popen([sys.executable, str(APP), db_url, "start", str(log),
                                    "--sleep", "4"], env=env, cwd=tmp_path, stderr=ferr)
    store = open_store(db_url)
    store.migrate()  # safe alongside the starter's own migration
    try:
        def both_suspended() -> bool:
            assert starter.poll() is None, err.read_text()
            rows = [store.get_workflow(w) for w in (SLEEPER, RECEIVER)]
            return all(r is not None and r.status == PENDING and r.owner is None
                       and r.wake_at_epoch_ms is not None for r in rows)

        eventually(both_suspended, timeout=60)
        sleeper_row = store.get_workflow(SLEEPER)
        assert sleeper_row is not None and sleeper_row.wake_at_epoch_ms is not None
        wake_at = sleeper_row.wake_at_epoch_ms
        os.kill(starter.pid, signal.SIGKILL)
        assert starter.wait(timeout=30) == -signal.SIGKILL

        resumer = subprocess.run([sys.executable, str(APP), db_url, "resume", str(log)],
                                 env=env, cwd=tmp_path, capture_output=True, text=True,
                                 timeout=120)
        assert resumer.returncode == 0, resumer.stderr
        out = json.loads(resumer.stdout.strip().splitlines()[-1])
    finally:
        if starter.poll() is None:
            os.kill(starter.pid, signal.SIGKILL)
            starter.wait()
        store.close()

    assert out["results"][RECEIVER] == "go-message"
    assert out["results"][SLEEPER] * 1000 >= wake_at  # resumed when due, not at launch
    for wid in (SLEEPER, RECEIVER):
        assert out["rows"][wid]["status"] == "SUCCESS"
        assert out["rows"][wid]["executor_id"] == "resumer"
        assert out["rows"][wid]["recovery_attempts"] == 1  # woken, never "recovered"
    events = _events(log)
    for wid in (SLEEPER, RECEIVER):
        before = [pid for ev, w, pid in events if w == wid and ev == "before"]
        after = [pid for ev, w, pid in events if w == wid and ev == "after"]
        assert before == [starter.pid], events
        assert len(after) == 1 and after[0] != starter.pid, events
