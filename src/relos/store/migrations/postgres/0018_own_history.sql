-- A single enqueue writes its own history row (version 18, PostgreSQL).
--
-- The status table's insert trigger runs once per statement: a PL/pgSQL call
-- that reads the statement's transition table and inserts the history rows
-- with a query of its own. For the one-row INSERT of an enqueue made one at a
-- time that call was about a tenth of the server's work. That statement now
-- inserts the history row itself, in the same statement (a data-modifying
-- WITH), and sets relos.announce to 'self' for its transaction; the trigger
-- does not run when it reads 'self'. Every other insert, relos's own (COPY,
-- multi-row INSERTs, starts, children, forks) or anyone's plain SQL, is
-- recorded by the trigger as before.
DROP TRIGGER workflow_status_insert_history ON {p}workflow_status;
CREATE TRIGGER workflow_status_insert_history AFTER INSERT ON {p}workflow_status
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (current_setting('relos.announce', true) IS DISTINCT FROM 'self')
    EXECUTE FUNCTION {p}record_inserted_statuses();
