-- Enqueues of delayed workflows are announced too (version 16, PostgreSQL).
--
-- An idle executor learns when the next delay ends from the database, at
-- most once a poll interval (version 15): a workflow another process
-- enqueued with a delay shorter than that could start up to a poll late.
-- Inserting DELAYED rows now notifies relos_queues as inserting ENQUEUED
-- ones does; an executor that hears of an enqueue to its queues reads the
-- next delay end again before it waits. (relos's own enqueues announce from
-- their statement or after commit, store/announcer.py; this trigger speaks
-- for everyone else's.)
CREATE OR REPLACE FUNCTION {p}record_inserted_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {p}workflow_status_history
        (workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user, at)
    SELECT workflow_id, status, owner, executor_id, recovery_attempts, authenticated_user,
           updated_at
    FROM new_rows;
    IF current_setting('relos.announce', true) IS DISTINCT FROM 'after'
       AND EXISTS (SELECT 1 FROM new_rows
                   WHERE status IN ('ENQUEUED', 'DELAYED') AND queue_name IS NOT NULL)
    THEN
        PERFORM pg_notify('relos_queues', q.queue_name)
        FROM (SELECT DISTINCT queue_name FROM new_rows
              WHERE status IN ('ENQUEUED', 'DELAYED') AND queue_name IS NOT NULL) q;
    END IF;
    RETURN NULL;
END $$;
