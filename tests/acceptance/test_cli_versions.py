"""``relos versions list|set-latest``, run for real in subprocesses, on both
backends. The versions are recorded the way launches record them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from relos.store import open_store

T0 = 1_700_000_000_000


def relos(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RELOS_SYSTEM_DATABASE_URL"}
    env["COLUMNS"] = "160"
    return subprocess.run([sys.executable, "-m", "relos.cli", "versions", *args,
                           "--database-url", url], capture_output=True, text=True, timeout=60,
                          env=env)


def ok_json(url: str, *args: str) -> object:
    done = relos(url, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_versions_list_and_set_latest(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.migrate()
        empty = relos(db_url, "list")
        assert empty.returncode == 0 and "no application versions" in empty.stdout
        assert ok_json(db_url, "list") == []
        store.register_application_version("v1", T0)
        store.register_application_version("v2", T0 + 1000)
    finally:
        store.close()

    assert ok_json(db_url, "list") == [
        {"version_name": "v2", "version_timestamp": T0 + 1000, "created_at": T0 + 1000,
         "latest": True},
        {"version_name": "v1", "version_timestamp": T0, "created_at": T0, "latest": False},
    ]
    table = relos(db_url, "list")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.strip()]
    [v2_line] = [line for line in lines if line.lstrip().startswith("v2")]
    [v1_line] = [line for line in lines if line.lstrip().startswith("v1")]
    assert "latest" in v2_line and "latest" not in v1_line
    assert lines.index(v2_line) < lines.index(v1_line)

    done = relos(db_url, "set-latest", "v1")
    assert done.returncode == 0, done.stderr
    assert "'v1' is now the latest" in done.stdout
    listed = ok_json(db_url, "list")
    assert isinstance(listed, list)
    assert [(v["version_name"], v["latest"]) for v in listed] == [("v1", True), ("v2", False)]
    assert listed[0]["version_timestamp"] > T0 + 1000

    back = ok_json(db_url, "set-latest", "v2")
    assert isinstance(back, dict)
    assert (back["version_name"], back["latest"]) == ("v2", True)


def test_set_latest_of_an_unknown_version_fails_naming_the_known_ones(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.migrate()
        store.register_application_version("v1", T0)
    finally:
        store.close()
    done = relos(db_url, "set-latest", "nope")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "'nope'" in lines[0] and "'v1'" in lines[0]
