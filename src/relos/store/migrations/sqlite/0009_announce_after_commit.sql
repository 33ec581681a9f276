-- Version 9 (SQLite): nothing to change. On PostgreSQL this version lets
-- relos's enqueues send their NOTIFY after commit instead of from the status
-- trigger; SQLite has no NOTIFY (its processes poll). The number is kept in
-- step with PostgreSQL's.
SELECT 1;
