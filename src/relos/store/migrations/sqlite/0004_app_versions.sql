-- Application versions (version 4, SQLite).
--
-- Every application version an executor has launched with. The version with
-- the highest version_timestamp is the latest: only executors running it
-- dequeue queued workflows enqueued without an explicit version. A version
-- seen for the first time is inserted with version_timestamp = now (or just
-- above the highest, should this host's clock be behind), so a new deploy
-- becomes the latest by itself; DBOS.set_latest_application_version (or
-- `relos versions set-latest`) moves the timestamp of an older version up to
-- roll back. A launch of a version already known changes nothing.
CREATE TABLE {p}application_versions (
    version_name        TEXT PRIMARY KEY,
    version_timestamp   BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);
