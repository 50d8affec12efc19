-- The log itself: one row per fact, never updated, never deleted by factlog.
--
-- `id` is the fact's position in the log and its SSE event id. AUTOINCREMENT (and not a
-- plain INTEGER PRIMARY KEY) guarantees an id is never handed out twice, even if rows at
-- the end of the table are deleted by hand: a client holding an old id must never see a
-- different fact under it.
CREATE TABLE facts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The SSE event type; NULL for a plain `message`.
    event           TEXT,
    -- The fact as compact JSON text, exactly as it is sent in the SSE `data:` line.
    fact            TEXT NOT NULL,
    -- RFC 3339 UTC time at which the fact's group was committed.
    created_at      TEXT NOT NULL,
    -- The publisher's Idempotency-Key, if it sent one.
    idempotency_key TEXT
);

-- A retried POST with the same key finds the first record here. Partial, so that facts
-- posted without a key (the common case) cost no index entry.
CREATE UNIQUE INDEX facts_idempotency_key ON facts (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Facts about the log itself: exactly one row.
CREATE TABLE log_meta (
    -- Identifies this log. It is made once, when the database is created, so a client can
    -- tell a log that was replaced or wiped from the one it was following.
    log_id TEXT NOT NULL
);

-- A random (version 4) UUID made in SQL, so that `sqlx migrate run` creates the same
-- database as the server does.
INSERT INTO log_meta (log_id)
SELECT lower(
    hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2)
    || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2)
    || '-' || hex(randomblob(6))
);
