-- Retention: factlog deletes the oldest facts when `--retain-facts` or `--retain-age` asks
-- it to. It only ever deletes a prefix of the log, and records here, in the transaction
-- that deletes, the highest id deleted: a reader whose position is below it has missed
-- facts, and is told so (a `reset`, a 410) instead of skipping them silently.
--
-- A table of its own, not a column of `log_meta`, so that both engines keep it apart from
-- what appends write (PostgreSQL's appends lock `log_meta`'s row until they commit).
CREATE TABLE log_retention (
    -- The highest id deleted; 0 while nothing has been.
    deleted_through INTEGER NOT NULL
);

INSERT INTO log_retention (deleted_through) VALUES (0);
