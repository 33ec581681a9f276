-- Enqueues may announce themselves after commit (version 9, PostgreSQL).
--
-- A transaction that sends NOTIFY takes a database-wide lock at commit and
-- holds it until its commit is flushed: concurrent enqueuers that each
-- notify commit one at a time. relos's own enqueues set relos.announce to
-- 'after' for their transaction and send the NOTIFY themselves once
-- committed, from one connection per process (store/announcer.py). Rows
-- inserted by anyone else (plain SQL) are announced by this trigger as before.
CREATE OR REPLACE FUNCTION {p}record_inserted_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {p}workflow_status_history
        (workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user, at)
    SELECT workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user,
           updated_at
    FROM new_rows;
    IF current_setting('relos.announce', true) IS DISTINCT FROM 'after'
       AND EXISTS (SELECT 1 FROM new_rows WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL)
    THEN
        PERFORM pg_notify('relos_queues', q.queue_name)
        FROM (SELECT DISTINCT queue_name FROM new_rows
              WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL) q;
    END IF;
    RETURN NULL;
END $$;
