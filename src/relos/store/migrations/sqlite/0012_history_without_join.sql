-- Version 12 (SQLite): nothing to change. On PostgreSQL this version lets the
-- statement-level history trigger skip its old-row/new-row join for
-- statements that change every row's status; SQLite's history triggers run
-- per row. The number is kept in step with PostgreSQL's.
SELECT 1;
