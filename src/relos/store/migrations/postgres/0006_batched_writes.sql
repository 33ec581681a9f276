-- Status history and queue wake-ups by statement-level triggers (version 6,
-- PostgreSQL).
--
-- The row-level triggers of version 1 ran a PL/pgSQL function and an INSERT
-- per changed row; a bulk enqueue, a batched claim or a group-committed batch
-- of completions changes hundreds of rows in one statement. These triggers
-- run once per statement and append the history of all its rows with one
-- INSERT ... SELECT from the statement's transition tables.
--
-- They also announce work to dequeuers: every statement that makes rows
-- ENQUEUED (an enqueue, a requeue by recovery, a resume, whoever ran it, even
-- plain SQL) notifies channel relos_queues once per queue, in the same
-- transaction, so it is delivered only if the rows commit.
DROP TRIGGER workflow_status_insert_history ON {p}workflow_status;
DROP TRIGGER workflow_status_update_history ON {p}workflow_status;
DROP FUNCTION {p}record_status_change();

CREATE FUNCTION {p}record_inserted_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {p}workflow_status_history
        (workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user, at)
    SELECT workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user,
           updated_at
    FROM new_rows;
    IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL)
    THEN
        PERFORM pg_notify('relos_queues', q.queue_name)
        FROM (SELECT DISTINCT queue_name FROM new_rows
              WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL) q;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER workflow_status_insert_history AFTER INSERT ON {p}workflow_status
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {p}record_inserted_statuses();

CREATE FUNCTION {p}record_updated_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {p}workflow_status_history
        (workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user, at)
    SELECT n.workflow_id, n.status, n.owner, n.executor_id, n.recovery_attempts,
           n.authenticated_user, n.updated_at
    FROM new_rows n JOIN old_rows o ON o.workflow_id = n.workflow_id
    WHERE o.status IS DISTINCT FROM n.status OR o.owner IS DISTINCT FROM n.owner;
    IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL)
    THEN
        PERFORM pg_notify('relos_queues', q.queue_name)
        FROM (SELECT DISTINCT n.queue_name FROM new_rows n
              JOIN old_rows o ON o.workflow_id = n.workflow_id
              WHERE n.status = 'ENQUEUED' AND o.status IS DISTINCT FROM 'ENQUEUED'
                AND n.queue_name IS NOT NULL) q;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER workflow_status_update_history AFTER UPDATE ON {p}workflow_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {p}record_updated_statuses();

-- The dequeue index ends with the workflow ID, the last key of the dequeue
-- order, so a claim reads rows in order from the index instead of sorting
-- every waiting row of the queue.
DROP INDEX {p}workflow_status_queue_idx;
CREATE INDEX workflow_status_queue_idx ON {p}workflow_status
    (queue_name, priority, created_at, workflow_id) WHERE status IN ('ENQUEUED', 'DELAYED');
