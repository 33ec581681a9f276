-- When the next delayed workflow becomes due (version 15, PostgreSQL).
--
-- A workflow enqueued with delay_seconds is DELAYED until its delay ends; an
-- idle executor used to find it at its next poll, up to a poll interval late
-- (a second on PostgreSQL). Executors now ask for the next delay end and wake
-- up then. This index holds the DELAYED rows only, in delay order: the
-- question is one index lookup however deep the queues, and workflows enqueued
-- without a delay never enter it.
CREATE INDEX workflow_status_delayed_idx ON {p}workflow_status (delay_until_epoch_ms)
    WHERE status = 'DELAYED';
