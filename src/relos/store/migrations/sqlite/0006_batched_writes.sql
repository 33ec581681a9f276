-- Version 6 (SQLite): the dequeue index ends with the workflow ID, the last
-- key of the dequeue order, so a claim reads rows in order from the index
-- instead of sorting every waiting row of the queue. (The PostgreSQL version
-- also replaces the status history triggers; SQLite keeps its row-level
-- triggers, which run in-process and cost little.)
DROP INDEX workflow_status_queue_idx;
CREATE INDEX workflow_status_queue_idx ON {p}workflow_status
    (queue_name, priority, created_at, workflow_id) WHERE status IN ('ENQUEUED', 'DELAYED');
