-- Named queries shared by both backends.
--
-- Each query starts with `-- name: NAME`; a variant for one backend only is
-- named `NAME@postgres` or `NAME@sqlite` and replaces the shared one there.
-- Parameters are written :name (converted to %(name)s for psycopg); {p} is
-- the table prefix (the quoted schema and a dot on PostgreSQL, empty on SQLite).
-- Values that may be NULL inside a SELECT list carry a CAST so PostgreSQL knows
-- their type.

-- name: insert_workflow
INSERT INTO {p}workflow_status ({workflow_columns})
VALUES ({workflow_params})
ON CONFLICT (workflow_id) DO NOTHING

-- name: get_workflow
SELECT {workflow_columns} FROM {p}workflow_status WHERE workflow_id = :workflow_id

-- name: complete_workflow
UPDATE {p}workflow_status
SET status = :status, output = :output, error = :error, updated_at = :now, completed_at = :now
WHERE workflow_id = :workflow_id AND status = 'PENDING'

-- name: claim_workflow
UPDATE {p}workflow_status
SET owner = :new_owner, executor_id = :executor_id,
    recovery_attempts = recovery_attempts + :attempt, updated_at = :now
WHERE workflow_id = :workflow_id AND status = 'PENDING' AND wake_at_epoch_ms IS NULL
  AND COALESCE(owner, '') = COALESCE(CAST(:expected_owner AS TEXT), '')
RETURNING {workflow_columns}

-- name: resume_workflow
UPDATE {p}workflow_status
SET status = 'PENDING', owner = NULL, recovery_attempts = 0, error = NULL,
    output = NULL, completed_at = NULL, deadline_epoch_ms = NULL, updated_at = :now
WHERE workflow_id = :workflow_id AND status <> 'SUCCESS'

-- name: insert_step
INSERT INTO {p}operation_outputs ({step_columns})
SELECT {step_params}
WHERE EXISTS (SELECT 1 FROM {p}workflow_status
              WHERE workflow_id = :workflow_id AND status = 'PENDING')
ON CONFLICT (workflow_id, function_id) DO NOTHING

-- name: load_steps
SELECT {step_columns} FROM {p}operation_outputs
WHERE workflow_id = :workflow_id ORDER BY function_id

-- name: fork_steps
INSERT INTO {p}operation_outputs ({step_columns})
SELECT :new_id, function_id, function_name, kind, output, error, started_at, completed_at,
       child_workflow_id, executor_id
FROM {p}operation_outputs WHERE workflow_id = :source_id AND function_id < :start_step

-- name: fork_events
INSERT INTO {p}workflow_events (workflow_id, key, value, function_id, updated_at)
SELECT :new_id, h.key, h.value, h.function_id, h.at
FROM {p}workflow_events_history h
WHERE h.workflow_id = :source_id AND h.function_id < :start_step
  AND h.id = (SELECT MAX(h2.id) FROM {p}workflow_events_history h2
              WHERE h2.workflow_id = :source_id AND h2.key = h.key
                AND h2.function_id < :start_step)

-- name: fork_streams
INSERT INTO {p}streams (workflow_id, key, position, value, closed, function_id, created_at)
SELECT :new_id, key, position, value, closed, function_id, created_at
FROM {p}streams WHERE workflow_id = :source_id AND function_id < :start_step

-- name: insert_message
INSERT INTO {p}notifications
    (message_id, destination_id, topic, message, sender_workflow_id, created_at)
VALUES (:message_id, :destination_id, :topic, :message, :sender_workflow_id, :now)
ON CONFLICT (message_id) DO NOTHING

-- name: take_message
UPDATE {p}notifications SET consumed_at = :now, consumed_by_function_id = :function_id
WHERE seq = (SELECT seq FROM {p}notifications
             WHERE destination_id = :destination_id AND topic = :topic
               AND consumed_at IS NULL
             ORDER BY seq LIMIT 1)
RETURNING message

-- name: take_message@postgres
UPDATE {p}notifications SET consumed_at = :now, consumed_by_function_id = :function_id
WHERE seq = (SELECT seq FROM {p}notifications
             WHERE destination_id = :destination_id AND topic = :topic
               AND consumed_at IS NULL
             ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING message

-- name: set_event
INSERT INTO {p}workflow_events (workflow_id, key, value, function_id, updated_at)
VALUES (:workflow_id, :key, :value, :function_id, :now)
ON CONFLICT (workflow_id, key) DO UPDATE
SET value = excluded.value, function_id = excluded.function_id, updated_at = excluded.updated_at

-- name: get_event
SELECT value FROM {p}workflow_events WHERE workflow_id = :workflow_id AND key = :key

-- name: get_all_events
SELECT key, value FROM {p}workflow_events WHERE workflow_id = :workflow_id ORDER BY key

-- name: stream_closed
SELECT 1 FROM {p}streams WHERE workflow_id = :workflow_id AND key = :key AND closed = 1

-- name: lock_workflow
SELECT 1 FROM {p}workflow_status WHERE workflow_id = :workflow_id

-- name: lock_workflow@postgres
SELECT 1 FROM {p}workflow_status WHERE workflow_id = :workflow_id FOR NO KEY UPDATE

-- name: append_stream
INSERT INTO {p}streams (workflow_id, key, position, value, closed, function_id, created_at)
SELECT :workflow_id, :key, COALESCE(MAX(position), -1) + 1, CAST(:value AS TEXT), :closed,
       CAST(:function_id AS INTEGER), :now
FROM {p}streams WHERE workflow_id = :workflow_id AND key = :key

-- name: read_stream
SELECT position, value, closed FROM {p}streams
WHERE workflow_id = :workflow_id AND key = :key AND position >= :from_position
ORDER BY position

-- name: register_executor
INSERT INTO {p}executors ({executor_columns}) VALUES ({executor_params})
ON CONFLICT (instance_id) DO UPDATE
SET executor_id = excluded.executor_id, application_version = excluded.application_version,
    hostname = excluded.hostname, pid = excluded.pid, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, stopped_at = excluded.stopped_at,
    queues = excluded.queues

-- name: heartbeat
UPDATE {p}executors SET heartbeat_at = :now WHERE instance_id = :instance_id

-- name: deregister_executor
UPDATE {p}executors SET stopped_at = :now, heartbeat_at = :now WHERE instance_id = :instance_id

-- name: gc_workflow_ids
SELECT workflow_id FROM {p}workflow_status
WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
  AND updated_at < :cutoff

-- name: save_queue
INSERT INTO {p}queues ({queue_columns}) VALUES ({queue_params})
ON CONFLICT (name) DO UPDATE
SET concurrency = excluded.concurrency, worker_concurrency = excluded.worker_concurrency,
    rate_limit = excluded.rate_limit, rate_period_ms = excluded.rate_period_ms,
    priority_enabled = excluded.priority_enabled, partitioned = excluded.partitioned,
    defined_by = excluded.defined_by, updated_at = excluded.updated_at
WHERE excluded.defined_by = 'runtime' OR queues.defined_by = 'code'

-- name: release_queue
UPDATE {p}queues
SET defined_by = 'code', updated_at = CASE WHEN defined_by = 'code' THEN updated_at ELSE :now END
WHERE name = :name

-- name: get_queue
SELECT {queue_columns} FROM {p}queues WHERE name = :name

-- name: get_deduplicated
SELECT {workflow_columns} FROM {p}workflow_status
WHERE queue_name = :queue_name AND deduplication_id = :deduplication_id
  AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')

-- name: save_schedule
INSERT INTO {p}schedules ({schedule_columns}) VALUES ({schedule_params})
ON CONFLICT (name) DO UPDATE
SET workflow_name = excluded.workflow_name, cron = excluded.cron,
    missed_tick_policy = excluded.missed_tick_policy, defined_by = excluded.defined_by,
    updated_at = excluded.updated_at
WHERE excluded.defined_by = 'runtime' OR schedules.defined_by = 'code'

-- name: get_schedule
SELECT {schedule_columns} FROM {p}schedules WHERE name = :name

-- name: set_schedule_paused
UPDATE {p}schedules
SET last_tick_epoch_ms = CASE WHEN paused = 1 AND :paused = 0 AND last_tick_epoch_ms < :now
                              THEN :now ELSE last_tick_epoch_ms END,
    paused = :paused, updated_at = :now
WHERE name = :name

-- name: delete_schedule
DELETE FROM {p}schedules WHERE name = :name

-- name: advance_schedule
UPDATE {p}schedules SET last_tick_epoch_ms = :new_last_tick, updated_at = :now
WHERE name = :name AND last_tick_epoch_ms = :expected_last_tick
  AND :new_last_tick > :expected_last_tick
