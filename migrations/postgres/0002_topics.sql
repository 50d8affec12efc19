-- Topics: every fact belongs to exactly one, named. Facts stored before topics existed are
-- in `default`. Adding a column with a constant default rewrites nothing (PostgreSQL 11
-- and later keep the default in the catalog for the rows stored before it).
ALTER TABLE facts ADD COLUMN topic text NOT NULL DEFAULT 'default';

-- "The facts of topic T after id N, in id order", which a topic's replay, tail and pages
-- all are, is a range of this index whatever the size of the rest of the log. Building it
-- reads the whole log once, the one start-up that does.
CREATE INDEX facts_topic_id ON facts (topic, id);

-- Idempotency keys are scoped to the topic: the same key on two topics is two facts.
DROP INDEX facts_idempotency_key;
CREATE UNIQUE INDEX facts_topic_idempotency_key ON facts (topic, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- `factlog_append` now takes `[topic, event, fact, idempotency_key]` quadruples and
-- answers with each record's topic. It still takes the `[event, fact, idempotency_key]`
-- triples of factlog 0.1, whose facts go to `default`, so that instances not yet upgraded
-- keep appending while others are (their query names the columns it reads, and the new
-- one only adds `topic`).
DROP FUNCTION factlog_publish(json, text, text);
DROP FUNCTION factlog_append(json);

CREATE FUNCTION factlog_append(batch json)
RETURNS TABLE (id bigint, topic text, event text, fact text, created_at text, existed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_first bigint;
    v_at timestamptz;
    v_topics text[];
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

    -- The records already in the log under the group's (topic, key) pairs. Planned afresh
    -- at each call (EXECUTE): PL/pgSQL keeps a statement's plan, and one made while the
    -- log was small would go on scanning it whole once it is large. No other statement
    -- here reads `facts` but through its primary key.
    SELECT array_agg(k.topic), array_agg(k.key) INTO v_topics, v_keys
    FROM (SELECT DISTINCT
                 CASE WHEN json_array_length(t.e) = 4 THEN t.e->>0 ELSE 'default' END AS topic,
                 t.e->>(json_array_length(t.e) - 1) AS key
          FROM json_array_elements(batch) AS t(e)) AS k
    WHERE k.key IS NOT NULL;
    IF v_keys IS NOT NULL THEN
        EXECUTE 'SELECT json_agg(json_build_array(f.topic, f.idempotency_key, f.id, f.event,
                                                  f.fact, factlog_time(f.created_at)))
                 FROM unnest($1::text[], $2::text[]) AS k(topic, key)
                 JOIN facts f ON f.topic = k.topic AND f.idempotency_key = k.key
                 WHERE f.idempotency_key IS NOT NULL'
            INTO v_known USING v_topics, v_keys;
    END IF;

    RETURN QUERY
    WITH raw AS (
        SELECT t.n, t.e, json_array_length(t.e) - 3 AS o
        FROM json_array_elements(batch) WITH ORDINALITY AS t(e, n)
    ),
    input AS (
        SELECT r.n, CASE WHEN r.o = 1 THEN r.e->>0 ELSE 'default' END AS topic,
               r.e->>r.o AS event, r.e->>(r.o + 1) AS fact, r.e->>(r.o + 2) AS key
        FROM raw r
    ),
    known AS (
        SELECT k->>0 AS topic, k->>1 AS key, (k->>2)::bigint AS id, k->>3 AS event,
               k->>4 AS fact, k->>5 AS at
        FROM json_array_elements(v_known) AS k
    ),
    -- A key already in the log answers with its record; a key repeated in the group is
    -- inserted by its first use only.
    fate AS (
        SELECT i.n, i.topic, i.event, i.fact, i.key,
               k.id AS old_id, k.event AS old_event, k.fact AS old_fact, k.at AS old_at,
               i.key IS NULL OR i.n = min(i.n) OVER (PARTITION BY i.topic, i.key) AS first_use
        FROM input i LEFT JOIN known k ON k.topic = i.topic AND k.key = i.key
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
        SELECT n, topic, key, new_id, event AS new_event, fact AS new_fact,
               coalesce(new_id, old_id, first_value(new_id) OVER first) AS id,
               CASE WHEN new_id IS NOT NULL THEN event
                    WHEN old_id IS NOT NULL THEN old_event
                    ELSE first_value(event) OVER first END AS event,
               CASE WHEN new_id IS NOT NULL THEN fact
                    WHEN old_id IS NOT NULL THEN old_fact
                    ELSE first_value(fact) OVER first END AS fact,
               coalesce(old_at, factlog_time(v_at)) AS at
        FROM numbered
        WINDOW first AS (PARTITION BY topic, key ORDER BY n)
    ),
    inserted AS (
        INSERT INTO facts (id, topic, event, fact, created_at, idempotency_key)
        SELECT new_id, topic, new_event, new_fact, v_at, key
        FROM resolved WHERE new_id IS NOT NULL
    )
    SELECT r.id, r.topic, r.event, r.fact, r.at, r.new_id IS NULL
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
-- a trigger, psql), with the same checks and guarantees as `POST /topics/{topic}/facts`:
-- every stream of that topic on every instance receives it, in order. Returns the fact's
-- id; with an idempotency key already used on the topic for the same fact (and event),
-- the id of the fact that key first published; for another fact, an error
-- (`unique_violation`), and nothing is written.
--
--     SELECT factlog_publish('{"info": "backup done", "source": "cron"}');
--     SELECT factlog_publish('{"order": 42}', topic => 'orders.eu');
--     SELECT factlog_publish('{"info": "deployed"}', 'deploy', 'deploy-2026-11-30-1', 'ops');
--
-- Insert into `facts` only through this function (or `factlog_append`): a row inserted
-- directly takes no lock and no counter value, and streams may skip it.
CREATE FUNCTION factlog_publish(fact json, event text DEFAULT NULL,
                                idempotency_key text DEFAULT NULL,
                                topic text DEFAULT 'default')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    compact text;
    appended record;
BEGIN
    IF factlog_publish.fact IS NULL THEN
        RAISE EXCEPTION 'factlog_publish: the fact is null (to publish JSON null, pass ''null''::json)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF factlog_publish.topic IS NULL OR factlog_publish.topic !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'factlog_publish: topic % is not 1 to 64 of A-Z a-z 0-9 _ . : -', coalesce(quote_literal(factlog_publish.topic), 'NULL')
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
    SELECT a.id, a.existed, a.event, a.fact INTO STRICT appended
    FROM factlog_append(json_build_array(json_build_array(
        factlog_publish.topic, factlog_publish.event, compact,
        factlog_publish.idempotency_key))) AS a;
    IF appended.existed AND (appended.fact IS DISTINCT FROM compact
                             OR appended.event IS DISTINCT FROM factlog_publish.event) THEN
        RAISE EXCEPTION 'factlog_publish: the idempotency key % was already used on topic % for a different fact (id %)',
            quote_literal(factlog_publish.idempotency_key), quote_literal(factlog_publish.topic), appended.id
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN appended.id;
END
$$;
