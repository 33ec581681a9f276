-- Version 14 (SQLite): nothing to change. On PostgreSQL this version gives
-- the identifier columns (workflow IDs, statuses, queue and executor names,
-- topics, keys) the "C" collation, which compares bytes; SQLite's default
-- collation (BINARY) does so already. The number is kept in step with
-- PostgreSQL's.
SELECT 1;
