"""Versioned schema migrations: ``<backend>/NNNN_name.sql``, applied in order.

Each file runs in one transaction together with the row recording it in the
``migrations`` table, so a crash mid-migration leaves the schema at the last
whole version. ``{p}`` in a file is replaced by the backend's table prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from relos.errors import SchemaVersionError

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load(backend: str, prefix: str) -> list[Migration]:
    """Every migration for the backend, in version order, with the prefix filled in."""
    folder = resources.files("relos.store.migrations").joinpath(backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            sql = entry.read_text("utf-8").replace("{p}", prefix)
            found.append(Migration(int(m.group(1)), m.group(2), sql))
    found.sort(key=lambda mig: mig.version)
    for i, mig in enumerate(found, start=1):
        if mig.version != i:
            raise RuntimeError(f"migrations for {backend} are not numbered 1..n: {mig}")
    return found


def latest(backend: str) -> int:
    return len(load(backend, ""))


def too_new(found: int, known: int) -> SchemaVersionError:
    """The error for a database migrated by a newer relos than this one."""
    return SchemaVersionError(
        f"the database schema is at version {found} but this relos knows only up to "
        f"{known}: it was migrated by a newer relos; upgrade relos to use it"
    )
