-- Topics: every fact belongs to exactly one, named. Facts stored before topics existed are
-- in `default`. Adding a column with a constant default rewrites nothing: SQLite supplies
-- the default when it reads a row stored before it.
ALTER TABLE facts ADD COLUMN topic TEXT NOT NULL DEFAULT 'default';

-- "The facts of topic T after id N, in id order", which a topic's replay, tail and pages
-- all are, is a range of this index whatever the size of the rest of the log: every
-- SQLite index ends with the rowid, which `id` is. Building it reads the whole log once,
-- the one start-up that does.
CREATE INDEX facts_topic ON facts (topic);

-- Idempotency keys are scoped to the topic: the same key on two topics is two facts.
DROP INDEX facts_idempotency_key;
CREATE UNIQUE INDEX facts_topic_idempotency_key ON facts (topic, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
