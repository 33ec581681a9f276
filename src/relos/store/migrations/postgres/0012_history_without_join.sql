-- History of statements that change every row's status (version 12, PostgreSQL).
--
-- The update trigger of version 6 joins the statement's old and new rows to
-- find the rows whose status or owner changed. A claim (ENQUEUED or DELAYED
-- to PENDING) and a batch of completions (PENDING to a final status) change
-- the status of every row they touch: their transaction says so with
-- set_config('relos.status_changes', 'all', true), and the trigger then
-- appends the new rows without the join (a hash table of the old rows and a
-- probe per new row: about a quarter of the trigger's time). The setting
-- lasts until the end of the transaction; any other statement is joined as
-- before.
CREATE OR REPLACE FUNCTION {p}record_updated_statuses() RETURNS trigger
LANGUAGE plpgsql SET enable_nestloop = off SET enable_hashjoin = on AS $$
BEGIN
    IF current_setting('relos.status_changes', true) = 'all' THEN
        INSERT INTO {p}workflow_status_history
            (workflow_id, status, owner, executor_id, recovery_attempts,
             authenticated_user, at)
        SELECT workflow_id, status, owner, executor_id, recovery_attempts,
               authenticated_user, updated_at
        FROM new_rows;
    ELSE
        INSERT INTO {p}workflow_status_history
            (workflow_id, status, owner, executor_id, recovery_attempts,
             authenticated_user, at)
        SELECT n.workflow_id, n.status, n.owner, n.executor_id, n.recovery_attempts,
               n.authenticated_user, n.updated_at
        FROM new_rows n JOIN old_rows o ON o.workflow_id = n.workflow_id
        WHERE o.status IS DISTINCT FROM n.status OR o.owner IS DISTINCT FROM n.owner;
    END IF;
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
