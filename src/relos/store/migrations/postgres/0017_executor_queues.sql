-- Which queues each executor dequeues from (version 17, PostgreSQL).
--
-- NULL: every queue its code defines (the default); a JSON array of names:
-- those it listens to (DBOS.listen_queues), '[]' for a process that only
-- enqueues. An executor whose claim found nothing holds back its next claim
-- briefly only when another live executor serves the same queue (they all
-- hear each enqueue, and all but one find nothing); rows of executors
-- registered before this version read as serving every queue.
ALTER TABLE {p}executors ADD COLUMN queues TEXT;
