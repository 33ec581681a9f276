-- Version 10 (SQLite): nothing to change. On PostgreSQL this version drops the
-- history's primary-key index and makes its time index a BRIN index; SQLite's
-- history rows are keyed by their rowid already, and it has no BRIN indexes.
-- The number is kept in step with PostgreSQL's.
SELECT 1;
