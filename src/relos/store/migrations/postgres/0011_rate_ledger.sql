-- Starts counted in a ledger (version 11, PostgreSQL).
--
-- A queue's rate limit counts the workflows it started in the last period.
-- They were counted through an index on (queue_name, started_at) of
-- workflow_status, which every status change of every queued workflow wrote
-- an entry into (its claim and its completion: two of a tiny task's index
-- entries), whether or not its queue had a rate limit. The claims of a
-- rate-limited queue now write one ledger row each (how many they started,
-- and when), and the limit sums the rows of its period.
--
-- The ledger starts with the starts of the current period of every queue
-- with a rate limit, read through the old index before it goes, so the
-- upgrade does not let a burst through.
CREATE TABLE {p}queue_starts (
    queue_name  TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    started     INTEGER NOT NULL
);
CREATE INDEX queue_starts_idx ON {p}queue_starts (queue_name, started_at);
INSERT INTO {p}queue_starts (queue_name, started_at, started)
    SELECT w.queue_name, w.started_at, COUNT(*)
    FROM {p}queues q JOIN {p}workflow_status w ON w.queue_name = q.name
    WHERE q.rate_limit IS NOT NULL AND q.rate_period_ms IS NOT NULL
      AND w.started_at >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT - q.rate_period_ms
      AND w.status NOT IN ('ENQUEUED', 'DELAYED')
    GROUP BY w.queue_name, w.started_at;
DROP INDEX {p}workflow_status_queue_started_idx;
