"""The application-version operations of :class:`~relos.store.sql.SQLStore`
(which delegates its version methods to the functions here).

``application_versions`` holds one small row per version executors launched
with; the version with the highest ``version_timestamp`` is the latest, and
only executors running it dequeue the workflows enqueued without a version.
Both writes give their version a timestamp above every other one (``now``, or
one more than the highest when this host's clock is behind it) in a single
statement, so a new deploy, or a rollback, becomes the latest even across
hosts whose clocks disagree a little. The executors read the latest version
about once a second (:class:`~relos.runtime.queueing.QueueRunner`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relos.store.base import APP_VERSION_COLUMNS, ApplicationVersion

if TYPE_CHECKING:
    from relos.store.sql import SQLStore

#: A timestamp above every recorded one: now, unless the table already holds
#: one at or past now (a clock behind another host's, or two changes in one ms).
_ABOVE_ALL = (
    "(SELECT CASE WHEN MAX(version_timestamp) >= {now} THEN MAX(version_timestamp) + 1 "
    "ELSE {now} END FROM {p}application_versions)"
)

_LATEST_FIRST = (
    f"SELECT {', '.join(APP_VERSION_COLUMNS)} FROM {{p}}application_versions "
    f"ORDER BY version_timestamp DESC, version_name DESC"
)


def register_application_version(store: SQLStore, version_name: str, now: int) -> None:
    ph = store._ph
    above = _ABOVE_ALL.format(now=ph("now"), p=store.prefix)
    # The WHERE lets SQLite's parser tell the upsert's ON from a join's.
    store._run(
        f"INSERT INTO {store.prefix}application_versions ({', '.join(APP_VERSION_COLUMNS)}) "
        f"SELECT {ph('name')}, {above}, {ph('now')} WHERE 1 = 1 "
        f"ON CONFLICT (version_name) DO NOTHING",
        {"name": version_name, "now": now},
    )


def list_application_versions(store: SQLStore) -> list[ApplicationVersion]:
    return [ApplicationVersion(r[0], int(r[1]), int(r[2]))
            for r in store._all(_LATEST_FIRST.format(p=store.prefix), {})]


def get_latest_application_version(store: SQLStore) -> ApplicationVersion | None:
    r = store._one(_LATEST_FIRST.format(p=store.prefix) + " LIMIT 1", {})
    return None if r is None else ApplicationVersion(r[0], int(r[1]), int(r[2]))


def set_latest_application_version(store: SQLStore, version_name: str, now: int) -> bool:
    ph = store._ph
    above = _ABOVE_ALL.format(now=ph("now"), p=store.prefix)
    return store._run(
        f"UPDATE {store.prefix}application_versions SET version_timestamp = {above} "
        f"WHERE version_name = {ph('name')}",
        {"name": version_name, "now": now},
    ) == 1
