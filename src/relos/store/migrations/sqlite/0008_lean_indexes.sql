-- Version 8 (SQLite): nothing to change. On PostgreSQL this version narrows
-- two indexes to the rows their queries look for; SQLite's planner uses a
-- partial index only when a query repeats its condition, so its indexes stay
-- whole. The number is kept in step with PostgreSQL's.
SELECT 1;
