-- factlog on PostgreSQL: the same log as the SQLite schema in `migrations/`, shared by any
-- number of factlog instances and by programs that publish through `factlog_publish`.
--
-- The one rule everything else rests on: ids follow commit order. No reader may ever see
-- id 11 while id 10 is still to commit, because every stream (on every instance) reads
-- "the facts after the last id I have" and would skip 10 for good. A sequence does not
-- give this: its values are taken before commit, and transactions commit in any order.
-- Here ids come from a counter row (`log_meta.last_id`) that `factlog_append` locks and
-- advances inside the appending transaction. The row lock is held until that transaction
-- commits, so the next append cannot take an id until the previous one is visible.

-- The log itself: one row per fact, never updated, never deleted by factlog.
CREATE TABLE facts (
    -- The fact's position in the log and its SSE event id. Assigned by `factlog_append`
    -- only; never reused, even when rows are deleted by hand.
    id              bigint PRIMARY KEY,
    -- The SSE event type; NULL for a plain `message`.
    event           text,
    -- The fact as compact JSON text, exactly as it is sent in the SSE `data:` line.
    fact            text NOT NULL,
    -- When the fact's group was appended.
    created_at      timestamptz NOT NULL,
    -- The publisher's Idempotency-Key, if it sent one.
    idempotency_key text
);

-- A retried POST with the same key finds the first record here. Partial, so that facts
-- posted without a key (the common case) cost no index entry.
CREATE UNIQUE INDEX facts_idempotency_key ON facts (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Facts about the log itself: exactly one row.
CREATE TABLE log_meta (
    -- Identifies this log. It is made once, when the database is created, so a client can
    -- tell a log that was replaced or wiped from the one it was following.
    log_id  text NOT NULL,
    -- The newest id handed out: the counter that orders appends (see the top of the file).
    last_id bigint NOT NULL
);

INSERT INTO log_meta (log_id, last_id) VALUES (gen_random_uuid()::text, 0);

-- A fact's time as the HTTP API shows it: RFC 3339, UTC, milliseconds.
CREATE FUNCTION factlog_time(at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- Appends a group of facts in the calling transaction and returns one row per input
-- element, in input order: the new record, or (`existed`) the record an earlier append
-- made under the same idempotency key (earlier in the log, or earlier in this group).
--
-- `batch` is a JSON array of `[event, fact, idempotency_key]` triples: `event` and
-- `idempotency_key` are strings or null, and `fact` is a string holding the fact as
-- compact JSON text. The values are not checked here; factlog checks them before calling,
-- and `factlog_publish` below checks what other programs send.
--
-- After the call commits, every factlog instance is told on the channel `factlog` (the
-- payload is the newest id), reads the new facts and sends them to its streams.
CREATE FUNCTION factlog_append(batch json)
RETURNS TABLE (id bigint, event text, fact text, created_at text, existed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_first bigint;
    v_at timestamptz;
    v_keys text[];
    v_known json;
    v_last bigint;
BEGIN
    -- Take the counter row's lock first and keep it until commit: this is what makes ids
    -- follow commit order across every connection, instance and worker. Idempotency keys
    -- are looked up after it, so two appends of the same key cannot both miss.
    SELECT m.last_id + 1 INTO STRICT v_first FROM log_meta m FOR UPDATE;
    -- The time is read after the lock, so that times grow with ids.
    v_at := clock_timestamp();

    -- The records already in the log under the group's keys. Planned afresh at each call
    -- (EXECUTE): PL/pgSQL keeps a statement's plan, and one made while the log was small
    -- would go on scanning it whole once it is large. No other statement here reads
    -- `facts` but through its primary key.
    SELECT array_agg(DISTINCT t.e->>2) INTO v_keys
    FROM json_array_elements(batch) AS t(e)
    WHERE t.e->>2 IS NOT NULL;
    IF v_keys IS NOT NULL THEN
        EXECUTE 'SELECT json_agg(json_build_array(f.idempotency_key, f.id, f.event, f.fact,
                                                  factlog_time(f.created_at)))
                 FROM facts f WHERE f.idempotency_key = ANY ($1)'
            INTO v_known USING v_keys;
    END IF;

    RETURN QUERY
    WITH input AS (
        SELECT t.n, t.e->>0 AS event, t.e->>1 AS fact, t.e->>2 AS key
        FROM json_array_elements(batch) WITH ORDINALITY AS t(e, n)
    ),
    known AS (
        SELECT k->>0 AS key, (k->>1)::bigint AS id, k->>2 AS event, k->>3 AS fact,
               k->>4 AS at
        FROM json_array_elements(v_known) AS k
    ),
    -- A key already in the log answers with its record; a key repeated in the group is
    -- inserted by its first use only.
    fate AS (
        SELECT i.n, i.event, i.fact, i.key,
               k.id AS old_id, k.event AS old_event, k.fact AS old_fact, k.at AS old_at,
               i.key IS NULL OR i.n = min(i.n) OVER (PARTITION BY i.key) AS first_use
        FROM input i LEFT JOIN known k ON k.key = i.key
    ),
    -- The facts to insert take the next ids, in input order.
    numbered AS (
        SELECT fate.*,
               CASE WHEN old_id IS NULL AND first_use
                    THEN v_first - 1
                         + count(*) FILTER (WHERE old_id IS NULL AND first_use) OVER (ORDER BY n)
               END AS new_id
        FROM fate
    ),
    -- The record each element answers with: its own new one, the one in the log, or the
    -- one its key's first use in this group makes.
    resolved AS (
        SELECT n, key, new_id, event AS new_event, fact AS new_fact,
               coalesce(new_id, old_id, first_value(new_id) OVER first) AS id,
               CASE WHEN new_id IS NOT NULL THEN event
                    WHEN old_id IS NOT NULL THEN old_event
                    ELSE first_value(event) OVER first END AS event,
               CASE WHEN new_id IS NOT NULL THEN fact
                    WHEN old_id IS NOT NULL THEN old_fact
                    ELSE first_value(fact) OVER first END AS fact,
               coalesce(old_at, factlog_time(v_at)) AS at
        FROM numbered
        WINDOW first AS (PARTITION BY key ORDER BY n)
    ),
    inserted AS (
        INSERT INTO facts (id, event, fact, created_at, idempotency_key)
        SELECT new_id, new_event, new_fact, v_at, key FROM resolved WHERE new_id IS NOT NULL
    )
    SELECT r.id, r.event, r.fact, r.at, r.new_id IS NULL
    FROM resolved r
    ORDER BY r.n;

    -- The statement above has run to its end, inserts included.
    SELECT max(f.id) INTO v_last FROM facts f WHERE f.id >= v_first;
    IF v_last IS NOT NULL THEN
        UPDATE log_meta SET last_id = v_last;
        -- Delivered to listeners at commit, and only if the transaction commits.
        PERFORM pg_notify('factlog', v_last::text);
    END IF;
END
$$;

-- Publishes one fact from any program that can reach the database (a background worker,
-- a trigger, psql), with the same checks and guarantees as `POST /facts`: every stream on
-- every instance receives it, in order. Returns the fact's id; with an idempotency key
-- already used, the id of the fact that key first published.
--
--     SELECT factlog_publish('{"info": "backup done", "source": "cron"}');
--     SELECT factlog_publish('{"info": "deployed"}', 'deploy', 'deploy-2026-11-24-1');
--
-- Insert into `facts` only through this function (or `factlog_append`): a row inserted
-- directly takes no lock and no counter value, and streams may skip it.
CREATE FUNCTION factlog_publish(fact json, event text DEFAULT NULL, idempotency_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    compact text;
    published bigint;
BEGIN
    IF factlog_publish.fact IS NULL THEN
        RAISE EXCEPTION 'factlog_publish: the fact is null (to publish JSON null, pass ''null''::json)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF factlog_publish.event IS NOT NULL AND factlog_publish.event !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'factlog_publish: event % is not 1 to 64 of A-Z a-z 0-9 _ . : -', quote_literal(factlog_publish.event)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF factlog_publish.idempotency_key IS NOT NULL
       AND factlog_publish.idempotency_key !~ '^[!-~]{1,200}$' THEN
        RAISE EXCEPTION 'factlog_publish: the idempotency key must be 1 to 200 visible ASCII characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Compact the JSON as factlog stores it: drop the whitespace outside strings (each
    -- string is matched whole and kept), keeping the keys in their order. The `json` type
    -- has already checked the syntax, so no string holds a raw line break and the fact
    -- fits one SSE `data:` line.
    compact := regexp_replace(factlog_publish.fact::text, '("(?:[^"\\]|\\.)*")|\s+', '\1', 'g');
    SELECT a.id INTO STRICT published
    FROM factlog_append(json_build_array(json_build_array(
        factlog_publish.event, compact, factlog_publish.idempotency_key))) AS a;
    RETURN published;
END
$$;
