-- relos system schema, version 1 (SQLite).
-- {p} is replaced by nothing on SQLite (one database file, no schemas).
-- Times are milliseconds since the Unix epoch (UTC), written by the caller.

-- Workflow state machine (column workflow_status.status):
--   ENQUEUED -> PENDING                    dequeued by an executor (queues)
--   PENDING  -> SUCCESS | ERROR            the function returned / raised
--   PENDING  -> CANCELLED                  cancel_workflow or its deadline passed
--   PENDING  -> MAX_RECOVERY_ATTEMPTS_EXCEEDED   recovered too often (dead letter)
--   CANCELLED | ERROR | MAX_... -> PENDING resume_workflow
-- `owner` is the executor process (instance) running a PENDING workflow; a
-- claim is a compare-and-swap on it, so two processes never run one workflow.
CREATE TABLE {p}workflow_status (
    workflow_id          TEXT PRIMARY KEY,
    status               TEXT NOT NULL,
    name                 TEXT NOT NULL,
    class_name           TEXT,
    config_name          TEXT,
    inputs               TEXT,
    output               TEXT,
    error                TEXT,
    executor_id          TEXT NOT NULL,
    owner                TEXT,
    application_version  TEXT,
    application_id       TEXT,
    authenticated_user   TEXT,
    assumed_role         TEXT,
    authenticated_roles  TEXT,
    parent_workflow_id   TEXT,
    forked_from          TEXT,
    queue_name           TEXT,
    deduplication_id     TEXT,
    priority             INTEGER NOT NULL DEFAULT 0,
    recovery_attempts    INTEGER NOT NULL DEFAULT 1,
    timeout_ms           BIGINT,
    deadline_epoch_ms    BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    started_at           BIGINT,
    completed_at         BIGINT
);
CREATE INDEX workflow_status_recovery_idx ON {p}workflow_status (status, executor_id);
CREATE INDEX workflow_status_created_idx ON {p}workflow_status (created_at);
CREATE INDEX workflow_status_parent_idx ON {p}workflow_status (parent_workflow_id)
    WHERE parent_workflow_id IS NOT NULL;

-- One row per step a workflow performed, in order (function_id). Append-only:
-- this is both the checkpoint log used for recovery and the step history.
-- WITHOUT ROWID: the rows live in the primary-key b-tree itself, so recording
-- a step writes one b-tree page instead of two (table + key index), and a
-- workflow's steps are stored together for load_steps.
CREATE TABLE {p}operation_outputs (
    workflow_id        TEXT NOT NULL,
    function_id        INTEGER NOT NULL,
    function_name      TEXT NOT NULL,
    kind               TEXT NOT NULL,
    output             TEXT,
    error              TEXT,
    child_workflow_id  TEXT,
    executor_id        TEXT,
    started_at         BIGINT NOT NULL,
    completed_at       BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, function_id)
) WITHOUT ROWID;

-- Every status or owner change of a workflow, appended by trigger.
-- `id` is the rowid: each new row gets one more than the largest present, so
-- ids grow with time. (No AUTOINCREMENT: it would also update sqlite_sequence,
-- one more page written by every status change, only to avoid reusing the ids
-- of deleted newest rows, which nothing needs.)
CREATE TABLE {p}workflow_status_history (
    id                  INTEGER PRIMARY KEY,
    workflow_id         TEXT NOT NULL,
    status              TEXT NOT NULL,
    owner               TEXT,
    executor_id         TEXT,
    recovery_attempts   INTEGER,
    authenticated_user  TEXT,
    at                  BIGINT NOT NULL
);
CREATE INDEX workflow_status_history_wf_idx ON {p}workflow_status_history (workflow_id, id);
CREATE INDEX workflow_status_history_at_idx ON {p}workflow_status_history (at);


-- Messages sent to a workflow (DBOS.send / DBOS.recv). Consumed messages are
-- kept (consumed_at set) so the exchange stays auditable until compaction.
CREATE TABLE {p}notifications (
    seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id              TEXT NOT NULL UNIQUE,
    destination_id          TEXT NOT NULL REFERENCES {p}workflow_status (workflow_id)
                                ON DELETE CASCADE,
    topic                   TEXT NOT NULL,
    message                 TEXT,
    sender_workflow_id      TEXT,
    created_at              BIGINT NOT NULL,
    consumed_at             BIGINT,
    consumed_by_function_id INTEGER
);
CREATE INDEX notifications_pending_idx ON {p}notifications (destination_id, topic, seq)
    WHERE consumed_at IS NULL;

-- Key/value events a workflow publishes (DBOS.set_event); history by trigger.
CREATE TABLE {p}workflow_events (
    workflow_id  TEXT NOT NULL REFERENCES {p}workflow_status (workflow_id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        TEXT,
    function_id  INTEGER,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, key)
);
CREATE TABLE {p}workflow_events_history (
    id           INTEGER PRIMARY KEY,  -- the rowid, as in workflow_status_history
    workflow_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT,
    function_id  INTEGER,
    at           BIGINT NOT NULL
);
CREATE INDEX workflow_events_history_wf_idx ON {p}workflow_events_history (workflow_id, key, id);


-- Append-only streams a workflow writes (DBOS.write_stream); a row with
-- closed = 1 marks the end of a stream.
CREATE TABLE {p}streams (
    workflow_id  TEXT NOT NULL REFERENCES {p}workflow_status (workflow_id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    position     INTEGER NOT NULL,
    value        TEXT,
    closed       INTEGER NOT NULL DEFAULT 0,
    function_id  INTEGER,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, key, position)
);

-- Executor processes, with a heartbeat, so a dead one's work can be taken over.
CREATE TABLE {p}executors (
    instance_id          TEXT PRIMARY KEY,
    executor_id          TEXT NOT NULL,
    application_version  TEXT,
    hostname             TEXT NOT NULL,
    pid                  INTEGER NOT NULL,
    started_at           BIGINT NOT NULL,
    heartbeat_at         BIGINT NOT NULL,
    stopped_at           BIGINT
);

-- History triggers (SQLite has no NOTIFY: waiters poll).
CREATE TRIGGER workflow_status_insert_history AFTER INSERT ON workflow_status
BEGIN
    INSERT INTO workflow_status_history
        (workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user, at)
    VALUES (NEW.workflow_id, NEW.status, NEW.owner, NEW.executor_id, NEW.recovery_attempts,
            NEW.authenticated_user, NEW.updated_at);
END;
CREATE TRIGGER workflow_status_update_history AFTER UPDATE ON workflow_status
    WHEN OLD.status IS NOT NEW.status OR OLD.owner IS NOT NEW.owner
BEGIN
    INSERT INTO workflow_status_history
        (workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user, at)
    VALUES (NEW.workflow_id, NEW.status, NEW.owner, NEW.executor_id, NEW.recovery_attempts,
            NEW.authenticated_user, NEW.updated_at);
END;
CREATE TRIGGER workflow_events_insert_history AFTER INSERT ON workflow_events
BEGIN
    INSERT INTO workflow_events_history (workflow_id, key, value, function_id, at)
    VALUES (NEW.workflow_id, NEW.key, NEW.value, NEW.function_id, NEW.updated_at);
END;
CREATE TRIGGER workflow_events_update_history AFTER UPDATE ON workflow_events
BEGIN
    INSERT INTO workflow_events_history (workflow_id, key, value, function_id, at)
    VALUES (NEW.workflow_id, NEW.key, NEW.value, NEW.function_id, NEW.updated_at);
END;
