-- Whether a claim gave the workflow its application version (version 13, PostgreSQL).
--
-- A claim stamps a workflow enqueued without a version with the claimer's
-- version, so that once it runs, only that version's code replays it. When a
-- stopping executor gives back claimed workflows it had not started, they
-- must leave as they came: without a version, for the latest version's
-- executors to take. Otherwise a graceful stop during a deploy left them
-- bound to the old version, which no executor of the new one would run.
-- The claim now notes here whether the version was its own doing.
ALTER TABLE {p}workflow_status ADD COLUMN version_from_claim BOOLEAN;
