-- Version 7 (SQLite): nothing to change. On PostgreSQL this version fixes
-- the join plan of the status-history trigger; SQLite's row triggers have
-- no join. The number is kept in step with PostgreSQL's.
SELECT 1;
