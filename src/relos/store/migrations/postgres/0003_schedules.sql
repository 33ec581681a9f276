-- Schedules (version 3, PostgreSQL).
--
-- A schedule starts its workflow at every tick of a cron expression (UTC).
-- Each tick's workflow has the deterministic ID sched:<name>:<tick epoch ms>,
-- so however many executors fire the same tick, its workflow exists once.
-- last_tick_epoch_ms is the schedule's cursor: every tick at or before it has
-- been fired or skipped; the executors advance it by compare-and-swap.
-- A schedule declared in code (@DBOS.scheduled) writes its row at launch
-- (defined_by = 'code') unless the row was set at run time
-- (defined_by = 'runtime', by DBOS.create_schedule); paused and the cursor
-- are never reset by a launch.
CREATE TABLE {p}schedules (
    name                TEXT PRIMARY KEY,
    workflow_name       TEXT NOT NULL,
    cron                TEXT NOT NULL,
    paused              INTEGER NOT NULL DEFAULT 0,
    missed_tick_policy  TEXT NOT NULL DEFAULT 'skip'
                        CHECK (missed_tick_policy IN ('skip', 'backfill')),
    last_tick_epoch_ms  BIGINT NOT NULL,
    defined_by          TEXT NOT NULL CHECK (defined_by IN ('code', 'runtime')),
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
