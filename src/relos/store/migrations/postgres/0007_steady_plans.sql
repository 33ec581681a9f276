-- Plans that do not depend on statistics (version 7, PostgreSQL).
--
-- The update trigger of version 6 joins the statement's old and new rows by
-- workflow ID. Transition tables have no statistics: the planner takes each
-- for one row and joins them with a nested loop, which compares every old row
-- with every new one (a batch of 1,000 completions: a million comparisons).
-- A hash join is linear whatever the batch size.
ALTER FUNCTION {p}record_updated_statuses() SET enable_nestloop = off;
ALTER FUNCTION {p}record_updated_statuses() SET enable_hashjoin = on;
