-- Retention: factlog deletes the oldest facts when `--retain-facts` or `--retain-age` asks
-- it to (one instance at a time, under an advisory lock). It only ever deletes a prefix
-- of the log, and records here, in the transaction that deletes, the highest id deleted:
-- a reader whose position is below it has missed facts, and is told so (a `reset`, a 410)
-- instead of skipping them silently. Programs that read `facts` directly should compare
-- their position with it in the same statement.
--
-- A table of its own, not a column of `log_meta`: `factlog_append` holds `log_meta`'s row
-- lock until it commits, and a deletion that updated that row would hold appends up.
CREATE TABLE log_retention (
    -- The highest id deleted; 0 while nothing has been.
    deleted_through bigint NOT NULL
);

INSERT INTO log_retention (deleted_through) VALUES (0);
