-- Queues (version 2, PostgreSQL).
--
-- Queued workflows are workflow_status rows in status ENQUEUED (or DELAYED,
-- with delay_until_epoch_ms) with a queue_name. An executor dequeues them by
-- claiming rows (FOR UPDATE SKIP LOCKED) and setting them PENDING with itself
-- as owner:
--   ENQUEUED -> PENDING            dequeued (started_at set, deadline starts)
--   DELAYED  -> PENDING            dequeued once delay_until_epoch_ms has passed
--   ENQUEUED | DELAYED -> CANCELLED
--   PENDING (owner dead) -> ENQUEUED   recovery puts it back, so limits hold
ALTER TABLE {p}workflow_status ADD COLUMN queue_partition_key TEXT;
ALTER TABLE {p}workflow_status ADD COLUMN delay_until_epoch_ms BIGINT;

-- What a dequeuer scans: the waiting rows of one queue, in priority order.
CREATE INDEX workflow_status_queue_idx ON {p}workflow_status
    (queue_name, priority, created_at) WHERE status IN ('ENQUEUED', 'DELAYED');
-- What the concurrency and rate limits count.
CREATE INDEX workflow_status_queue_started_idx ON {p}workflow_status
    (queue_name, started_at) WHERE queue_name IS NOT NULL;
-- A deduplication ID is unique in its queue while its workflow is not finished.
CREATE UNIQUE INDEX workflow_status_dedup_idx ON {p}workflow_status
    (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED', 'PENDING');

-- Queue limits, stored so they can be changed at run time. A Queue defined in
-- code writes its row at launch (defined_by = 'code') unless the row was set
-- at run time (defined_by = 'runtime', by DBOS.register_queue).
CREATE TABLE {p}queues (
    name                TEXT PRIMARY KEY,
    concurrency         INTEGER,
    worker_concurrency  INTEGER,
    rate_limit          INTEGER,
    rate_period_ms      BIGINT,
    priority_enabled    INTEGER NOT NULL DEFAULT 0,
    partitioned         INTEGER NOT NULL DEFAULT 0,
    defined_by          TEXT NOT NULL,
    updated_at          BIGINT NOT NULL
);
