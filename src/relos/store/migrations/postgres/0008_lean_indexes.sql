-- Fewer index entries per status change (version 8, PostgreSQL).
--
-- Every status change of a workflow writes a new row version, and a new entry
-- into each index whose condition the new version meets. A tiny task changes
-- status three times (ENQUEUED, PENDING, SUCCESS), so each unconditional index
-- of workflow_status costs it three entries. Two indexes now hold only the
-- rows their queries look for:
--
-- * (status, executor_id): recovery and the queues' concurrency count look for
--   PENDING rows, listings filter on the rarer statuses. ENQUEUED and DELAYED
--   rows are in the dequeue index already, and SUCCESS, the status of most
--   rows, is listed through the creation-time index.
-- * (queue_name, started_at): the rate limit counts rows started since a time,
--   so rows not started yet need no entry.
--
-- Rebuilding an index holds up writes to workflow_status while it is built
-- (seconds on a table of millions of rows): migrate before a busy period.
DROP INDEX {p}workflow_status_recovery_idx;
CREATE INDEX workflow_status_recovery_idx ON {p}workflow_status (status, executor_id)
    WHERE status NOT IN ('SUCCESS', 'ENQUEUED', 'DELAYED');
DROP INDEX {p}workflow_status_queue_started_idx;
CREATE INDEX workflow_status_queue_started_idx ON {p}workflow_status (queue_name, started_at)
    WHERE queue_name IS NOT NULL AND started_at IS NOT NULL;
