-- Identifiers compared byte by byte (version 14, PostgreSQL).
--
-- Workflow IDs, statuses, queue and executor names, message topics and event
-- keys are identifiers: only their equality and a stable order matter, never a
-- language's order. Under the database's collation (often en_US or an ICU
-- locale) every comparison in their indexes goes through the locale's rules,
-- and the indexes on these columns take several entries per workflow (one per
-- status change): most of the server's work in draining a queue is index
-- insertion. The "C" collation compares bytes, as SQLite does by default, so
-- both backends also sort identifiers alike.
--
-- The column types stay text: no table is rewritten, but the indexes on these
-- columns are rebuilt, and the tables are locked while that runs.
ALTER TABLE {p}workflow_status
    ALTER COLUMN workflow_id TYPE TEXT COLLATE "C",
    ALTER COLUMN status TYPE TEXT COLLATE "C",
    ALTER COLUMN executor_id TYPE TEXT COLLATE "C",
    ALTER COLUMN queue_name TYPE TEXT COLLATE "C",
    ALTER COLUMN deduplication_id TYPE TEXT COLLATE "C",
    ALTER COLUMN parent_workflow_id TYPE TEXT COLLATE "C",
    ALTER COLUMN waiting_for TYPE TEXT COLLATE "C";
ALTER TABLE {p}workflow_status_history ALTER COLUMN workflow_id TYPE TEXT COLLATE "C";
ALTER TABLE {p}operation_outputs ALTER COLUMN workflow_id TYPE TEXT COLLATE "C";
ALTER TABLE {p}notifications
    ALTER COLUMN destination_id TYPE TEXT COLLATE "C",
    ALTER COLUMN topic TYPE TEXT COLLATE "C",
    ALTER COLUMN message_id TYPE TEXT COLLATE "C";
ALTER TABLE {p}workflow_events
    ALTER COLUMN workflow_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE {p}workflow_events_history
    ALTER COLUMN workflow_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE {p}streams
    ALTER COLUMN workflow_id TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE {p}queue_starts ALTER COLUMN queue_name TYPE TEXT COLLATE "C";
