-- Suspended workflows (version 5, PostgreSQL).
--
-- A workflow blocked in DBOS.sleep, DBOS.recv or DBOS.get_event for longer
-- than suspend_after_seconds gives its thread back: it stays PENDING, with
-- no owner, and these columns say when and why it resumes.
--   wake_at_epoch_ms  when any executor may claim it and replay it (its
--                     sleep's end, its wait's timeout, or its deadline if
--                     sooner); set to "now" by the send or set_event it
--                     waits for. NULL: not suspended.
--   waiting_for       what it waits for: 'message:<topic>' (a message to
--                     itself) or 'event:["<workflow_id>", "<key>"]'; NULL for
--                     a sleep.
-- State machine (status stays PENDING throughout):
--   PENDING, owner X          -> PENDING, owner NULL, wake_at set   suspended by X
--   PENDING, owner NULL, wake -> PENDING, owner Y, wake_at NULL     claimed when due by Y
-- Recovery never claims a suspended row (its owner is not dead, it has
-- none); cancelling one makes it CANCELLED and the waker then leaves it.
ALTER TABLE {p}workflow_status ADD COLUMN wake_at_epoch_ms BIGINT;
ALTER TABLE {p}workflow_status ADD COLUMN waiting_for TEXT;

-- What the waker scans: the suspended workflows in wake-up order.
CREATE INDEX workflow_status_wake_idx ON {p}workflow_status (wake_at_epoch_ms)
    WHERE status = 'PENDING' AND wake_at_epoch_ms IS NOT NULL;
-- What DBOS.set_event looks up: the workflows suspended waiting for that event.
CREATE INDEX workflow_status_waiting_idx ON {p}workflow_status (waiting_for)
    WHERE waiting_for IS NOT NULL;
