-- Version 16 (SQLite): nothing to change. On PostgreSQL this version makes
-- inserts of DELAYED workflows notify the executors as inserts of ENQUEUED
-- ones do; SQLite has no notifications. The number is kept in step with
-- PostgreSQL's.
SELECT 1;
