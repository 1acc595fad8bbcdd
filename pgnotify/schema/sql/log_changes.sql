-- The change function: a statement-level AFTER trigger of a watched table, one per operation
-- (PostgreSQL allows transition tables only on single-event triggers). For every shape of table a
-- Django model can have (docs/models.md):
-- * a key of one column (the event's `pk` is its value) or several (a composite key: `pk` is an
--   object of the key columns, and an UPDATE pairs old and new rows on all of them);
-- * the event's `table` comes from the trigger: a partition's events name the partitioned
--   table, and a table outside the search path is named with its schema;
-- * one table, several targets (a model and its proxies): each target gets its own events, on
--   its channel, with its model label and its excluded columns, one target after the other, so
--   each target's events of one statement have consecutive ids;
-- * an UPDATE that changes no visible column (only excluded ones, or none at all) logs and sends
--   nothing;
-- * intervals in ISO 8601 (P1DT2H3M4.5S) when the trigger asks for it, whatever the writer's
--   IntervalStyle;
-- * a valid write never fails: a json column may hold what jsonb refuses (a lone surrogate
--   escape, \u0000), and to_jsonb of its row fails. A table with a json column (option 'json')
--   renders its rows through pgnotify_jsonb_row, which carries such a value as its JSON text and
--   names its column in the event's `as_text` (docs/models.md); every other table renders them
--   with to_jsonb, at no cost more.
-- One statement per target logs the statement's events in pgnotify_event (same transaction as
-- the change) and, for a statement of at most 32 rows, sends each event; a larger statement sends
-- one chunk notification per 1,000 event ids, {"chunk": [first_id, last_id], "txid", "table",
-- "op"}, which the listener expands from the log. No SET clauses on the function (each costs a
-- settings save and restore per call): what a statement needs it sets transaction-locally and
-- puts back.
-- An UPDATE pairs old and new rows on the table's own key when it only holds the model's (a table
-- partitioned on ts: PRIMARY KEY (id, ts), the model keyed on id): a row whose ts changed is
-- still the same row; `pk` stays the model's key.
-- Arguments (pgnotify/schema/triggers.py renders them): key columns (array literal), event table,
-- options (comma-separated: 'iso_intervals', 'json'; or ''), the columns rows are paired on (array
-- literal), then per target: channel, model label, excluded columns (array literal).
-- A change here is a new migration that applies this file again (pgnotify/schema/functions.py):
-- the function keeps its name, so the triggers keep calling it.
-- Each watched table's triggers call a copy of this function that `migrate` makes for the table,
-- with paths of the table's own (pgnotify/schema/table_function.py) where the comments naming
-- that module stand: they must stay as they are. Such a copy takes its name from a hash of this
-- function's text, so an edit here gives every table a new one at the next `migrate`.
--
-- What the writer pays, in backend instructions per statement (docs/benchmarks.md):
-- * A statement of one row (most writes) takes a path of its own: the row is rendered once for
--   every target, its event is built by plain expressions (PL/pgSQL evaluates those without the
--   executor) and logged and notified by one small INSERT; a composite `pk` is built from the key
--   columns, not from a catalog query; an UPDATE of a table that is not a partition finds its
--   columns' order in the row itself (a partition's changed columns follow its partitioned
--   table's order: read from the catalog).
-- * Every statement: an event's text is rendered once (not once to measure it, once to send it).
-- * A statement of several rows builds each event with to_jsonb of a row of its fields, which
--   costs less than jsonb_build_object (that looks up each argument's type for every event).

-- A row of a table with a json column as to_jsonb renders it; a value jsonb refuses is its JSON
-- text, and the row's key '' (no column can have that name) lists those columns in jsonb's key
-- order. Only a \u escape can make jsonb refuse what json took: the trigger calls this only for
-- a row whose text holds one, so no other row enters its EXCEPTION block (a subtransaction each
-- time). Only on that path are the columns read one by one: a transition table's row is a
-- record, made the table's row type through its text.
CREATE OR REPLACE FUNCTION pgnotify_jsonb_row(whole anyelement, relation regclass) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    careful jsonb := '{}';
    as_text text[] := '{}';
    name text;
    value jsonb;
BEGIN
    BEGIN
        RETURN to_jsonb(whole);
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        NULL;  -- one of its values: found below, column by column
    END;
    FOR name IN SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = relation
                   AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY octet_length(a.attname::text), a.attname::text COLLATE "C" LOOP
        BEGIN
            EXECUTE format('SELECT to_jsonb((($1::text)::%s).%I)', relation, name) INTO value USING whole;
        EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
            EXECUTE format('SELECT to_jsonb((($1::text)::%s).%I::text)', relation, name) INTO value USING whole;
            as_text := as_text || name;
        END;
        careful := careful || jsonb_build_object(name, value);
    END LOOP;
    RETURN careful || jsonb_build_object('', as_text);
END;
$$;

CREATE OR REPLACE FUNCTION pgnotify_log_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- No initialised variables: each initialiser is an expression set up anew in every
    -- transaction (most writes are a transaction of one statement), and a table's own path
    -- (below) needs none of them.
    chunk_size int;
    keys text[];
    key text;
    composite boolean;
    event_table text;
    iso_intervals boolean;
    with_json boolean;
    ts jsonb;  -- one timestamp per statement: the time the trigger ran
    xact xid8;
    txid bigint;
    statement_rows bigint;
    each_event boolean;
    saved_jit text;
    saved_work_mem text;
    saved_mergejoin text;
    saved_intervalstyle text;
    non_key text[];
    pair_keys text[];  -- an UPDATE's
    pair_non_key text[];  -- set when rows are paired on other columns than the key
    target int;
    event_channel text;
    label text;
    excluded text[];
    visible text[];
    first_id bigint;
    last_id bigint;
    events bigint;
    notified bigint;
    chunk_first bigint;
    -- A statement of one row:
    one_row jsonb;
    one_old_row jsonb;
    row_columns text[];  -- the row's columns in its table's order
    row_paired boolean;  -- UPDATE: whether the key the rows are paired on kept its value
    row_changed text[];
    row_pk jsonb;
    event_id bigint;
    event_payload jsonb;
    event_text text;
    own_columns boolean;  -- a table's own path: whether its columns are as `migrate` found them
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO statement_rows FROM old_rows;
    ELSE
        SELECT count(*) INTO statement_rows FROM new_rows;
    END IF;
    IF statement_rows = 0 THEN
        RETURN NULL;
    END IF;
    -- A table's own path (pgnotify/schema/table_function.py).
    keys := TG_ARGV[0]::text[];
    key := keys[1];
    composite := cardinality(keys) > 1;
    event_table := TG_ARGV[1];
    iso_intervals := strpos(TG_ARGV[2], 'iso_intervals') > 0;  -- options: 'iso_intervals', 'json'
    with_json := strpos(TG_ARGV[2], 'json') > 0;
    ts := to_jsonb(clock_timestamp());
    xact := pg_current_xact_id();
    txid := xact::text::bigint;
    target := 4;
    each_event := statement_rows <= 32;  -- else the events go in chunk notifications
    IF NOT each_event THEN
        -- The transition tables have no statistics: a bulk statement's estimates can cross the JIT
        -- threshold, and compiling costs more than the query. Old and new rows are paired in
        -- memory by a hash join: sorting jsonb keys for a merge join costs more.
        saved_jit := current_setting('jit');
        saved_work_mem := current_setting('work_mem');
        saved_mergejoin := current_setting('enable_mergejoin');
        PERFORM set_config('jit', 'off', true), set_config('work_mem', '64MB', true),
                set_config('enable_mergejoin', 'off', true);
    END IF;
    IF iso_intervals THEN
        saved_intervalstyle := current_setting('intervalstyle');
        PERFORM set_config('intervalstyle', 'iso_8601', true);
    END IF;
    IF statement_rows = 1 THEN
        IF TG_OP = 'INSERT' THEN
            SELECT CASE WHEN with_json AND strpos(r::text, '\u') > 0
                        THEN pgnotify_jsonb_row(r, TG_RELID::regclass) ELSE to_jsonb(r) END
              INTO one_row FROM new_rows r;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT CASE WHEN with_json AND strpos(r::text, '\u') > 0
                        THEN pgnotify_jsonb_row(r, TG_RELID::regclass) ELSE to_jsonb(r) END
              INTO one_row FROM old_rows r;
        ELSE
            pair_keys := TG_ARGV[3]::text[];
            -- A table that is not a partition gives its columns' order with the row (unless it holds
            -- a \u escape: a json column's value json_object_keys may refuse).
            SELECT CASE WHEN with_json AND strpos(n::text, '\u') > 0
                        THEN pgnotify_jsonb_row(n, TG_RELID::regclass) ELSE to_jsonb(n) END,
                   CASE WHEN with_json AND strpos(o::text, '\u') > 0
                        THEN pgnotify_jsonb_row(o, TG_RELID::regclass) ELSE to_jsonb(o) END,
                   CASE WHEN NOT (with_json AND strpos(n::text, '\u') > 0) AND pg_partition_root(TG_RELID) IS NULL
                        THEN ARRAY(SELECT json_object_keys(row_to_json(n))) END
              INTO one_row, one_old_row, row_columns FROM new_rows n, old_rows o;
            IF row_columns IS NULL THEN  -- a partition's: the partitioned table's order
                SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO row_columns
                  FROM pg_attribute a
                 WHERE a.attrelid = coalesce(pg_partition_root(TG_RELID), TG_RELID::regclass)
                   AND a.attnum > 0 AND NOT a.attisdropped;
            END IF;
            -- A row whose key (or the table's key holding it) changed is not paired: every
            -- visible column counts as changed.
            row_paired := (SELECT bool_and(one_row -> k = one_old_row -> k) FROM unnest(pair_keys) k);
        END IF;
        IF composite THEN
            row_pk := (SELECT jsonb_object_agg(k, one_row -> k) FROM unnest(keys) k);
        ELSE
            row_pk := one_row -> key;
        END IF;
        WHILE target < TG_NARGS LOOP
            event_channel := TG_ARGV[target];
            label := TG_ARGV[target + 1];
            excluded := TG_ARGV[target + 2]::text[] || ''::text;  -- and the as_text list's key, if any
            target := target + 3;
            IF TG_OP = 'UPDATE' THEN
                row_changed := ARRAY(SELECT c FROM unnest(row_columns) c WHERE c <> ALL (excluded)
                                        AND (row_paired IS NOT TRUE OR one_row -> c IS DISTINCT FROM one_old_row -> c));
                CONTINUE WHEN row_changed = '{}';  -- nothing the subscribers may see changed
            END IF;
            event_id := nextval('pgnotify_event_id_seq');
            event_payload := jsonb_build_object(
                'id', event_id, 'channel', event_channel, 'table', event_table, 'model', label,
                'op', TG_OP, 'pk', row_pk, 'ts', ts, 'txid', txid, 'row', one_row - excluded);
            IF TG_OP = 'UPDATE' THEN
                event_payload := event_payload || jsonb_build_object('changed', to_jsonb(row_changed));
            END IF;
            IF with_json AND one_row ? '' THEN
                event_payload := event_payload || jsonb_build_object('as_text', one_row -> '');
            END IF;
            event_text := event_payload::text;
            IF octet_length(event_text) >= 8000 THEN
                event_text := ((event_payload - 'row') || '{"truncated": true}'::jsonb)::text;
            END IF;
            -- Logged and notified by one statement: pg_notify's one row feeds the INSERT.
            INSERT INTO pgnotify_event (id, channel, txid, payload)
            SELECT event_id, event_channel, xact, event_payload FROM pg_notify(event_channel, event_text);
        END LOOP;
        IF iso_intervals THEN
            PERFORM set_config('intervalstyle', saved_intervalstyle, true);
        END IF;
        RETURN NULL;
    END IF;
    IF composite THEN
        -- A composite key is the row less every other column: {"tenant": 1, "code": "a"}.
        SELECT array_agg(a.attname::text) INTO non_key
          FROM pg_attribute a
         WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped AND a.attname::text <> ALL (keys);
        non_key := coalesce(non_key, '{}') || ''::text;  -- and the as_text list's key, if any
    END IF;

    WHILE target < TG_NARGS LOOP
        event_channel := TG_ARGV[target];
        label := TG_ARGV[target + 1];
        excluded := TG_ARGV[target + 2]::text[] || ''::text;  -- and the as_text list's key, if any
        target := target + 3;
        -- Each statement below notifies its events as it reads back the rows it wrote, in the order
        -- of their ids. NOTIFY refuses payloads of 8000 bytes or more: a bigger event goes without
        -- its row, which the listener restores from the log. FILTER: a bulk statement sends none.
        IF TG_OP = 'INSERT' THEN
            WITH logged AS (
                INSERT INTO pgnotify_event (id, channel, txid, payload)
                SELECT p.id, event_channel, xact, CASE WHEN with_json AND p.whole ? ''
                           THEN p.payload || jsonb_build_object('as_text', p.whole -> '') ELSE p.payload END
                  FROM (SELECT e.id, e.whole, to_jsonb(m) AS payload
                          FROM (SELECT nextval('pgnotify_event_id_seq') AS id, CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                           THEN pgnotify_jsonb_row(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                                  FROM new_rows r) e,
                               LATERAL (SELECT e.id AS id, event_channel AS channel, event_table AS "table",
                                               label AS model, TG_OP AS op,
                                               CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END AS pk,
                                               ts AS ts, txid AS txid, e.whole - excluded AS "row") m) p
                RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(t.payload_text) < 8000 THEN t.payload_text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged, LATERAL (SELECT CASE WHEN each_event THEN payload::text END AS payload_text) t;
        ELSIF TG_OP = 'DELETE' THEN
            WITH logged AS (
                INSERT INTO pgnotify_event (id, channel, txid, payload)
                SELECT p.id, event_channel, xact, CASE WHEN with_json AND p.whole ? ''
                           THEN p.payload || jsonb_build_object('as_text', p.whole -> '') ELSE p.payload END
                  FROM (SELECT e.id, e.whole, to_jsonb(m) AS payload
                          FROM (SELECT nextval('pgnotify_event_id_seq') AS id, CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                           THEN pgnotify_jsonb_row(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                                  FROM old_rows r) e,
                               LATERAL (SELECT e.id AS id, event_channel AS channel, event_table AS "table",
                                               label AS model, TG_OP AS op,
                                               CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END AS pk,
                                               ts AS ts, txid AS txid, e.whole - excluded AS "row") m) p
                RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(t.payload_text) < 8000 THEN t.payload_text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged, LATERAL (SELECT CASE WHEN each_event THEN payload::text END AS payload_text) t;
        ELSE
            pair_keys := TG_ARGV[3]::text[];
            IF pair_keys IS DISTINCT FROM keys THEN
                SELECT coalesce(array_agg(a.attname::text), '{}') || ''::text INTO pair_non_key
                  FROM pg_attribute a
                 WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname::text <> ALL (pair_keys);
            END IF;
            -- `changed` follows the column order of the partitioned table a partition belongs to.
            SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO visible
              FROM pg_attribute a
             WHERE a.attrelid = coalesce(pg_partition_root(TG_RELID), TG_RELID::regclass)
               AND a.attnum > 0 AND NOT a.attisdropped AND a.attname::text <> ALL (excluded);
            -- Old and new rows are paired on the key, or the table's key holding it (a row whose
            -- key changed finds no old row: every visible column counts as changed).
            -- A table's own statement of several rows (pgnotify/schema/table_function.py).
            -- MATERIALIZED: each row is rendered once.
            WITH new_json AS MATERIALIZED (
                    SELECT CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                THEN pgnotify_jsonb_row(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                      FROM new_rows r),
                 old_json AS MATERIALIZED (
                    SELECT CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                THEN pgnotify_jsonb_row(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                      FROM old_rows r),
                 pairs AS MATERIALIZED (
                    SELECT n.whole,
                           -- In column order: unnest yields the array in order.
                           ARRAY(SELECT v.name FROM unnest(visible) AS v(name)
                                  WHERE n.whole -> v.name IS DISTINCT FROM o.whole -> v.name) AS changed
                      FROM new_json n LEFT JOIN old_json o
                        ON CASE WHEN pair_non_key IS NOT NULL THEN o.whole - pair_non_key
                                WHEN composite THEN o.whole - non_key ELSE o.whole -> key END
                         = CASE WHEN pair_non_key IS NOT NULL THEN n.whole - pair_non_key
                                WHEN composite THEN n.whole - non_key ELSE n.whole -> key END),
                 logged AS (
                    INSERT INTO pgnotify_event (id, channel, txid, payload)
                    SELECT l.id, event_channel, xact, CASE WHEN with_json AND l.whole ? ''
                               THEN l.payload || jsonb_build_object('as_text', l.whole -> '') ELSE l.payload END
                      FROM (SELECT e.id, e.whole, to_jsonb(m) AS payload
                              FROM (SELECT nextval('pgnotify_event_id_seq') AS id, p.whole, p.changed
                                      FROM pairs p
                                     -- Nothing the subscribers may see changed (only excluded columns, or none).
                                     WHERE p.changed <> '{}') e,
                                   LATERAL (SELECT e.id AS id, event_channel AS channel, event_table AS "table",
                                                   label AS model, TG_OP AS op,
                                                   CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END AS pk,
                                                   ts AS ts, txid AS txid, e.whole - excluded AS "row",
                                                   e.changed AS changed) m) l
                    RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(t.payload_text) < 8000 THEN t.payload_text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged, LATERAL (SELECT CASE WHEN each_event THEN payload::text END AS payload_text) t;
            -- The end of a table's own statement of several rows.
        END IF;

        IF NOT each_event THEN
            chunk_size := 1000;
            chunk_first := first_id;
            WHILE chunk_first <= last_id LOOP
                PERFORM pg_notify(event_channel, jsonb_build_object(
                    'chunk', jsonb_build_array(chunk_first, least(chunk_first + chunk_size - 1, last_id)),
                    'txid', txid, 'table', event_table, 'op', TG_OP)::text);
                chunk_first := chunk_first + chunk_size;
            END LOOP;
        END IF;
    END LOOP;

    IF iso_intervals THEN
        PERFORM set_config('intervalstyle', saved_intervalstyle, true);
    END IF;
    IF NOT each_event THEN
        PERFORM set_config('jit', saved_jit, true), set_config('work_mem', saved_work_mem, true),
                set_config('enable_mergejoin', saved_mergejoin, true);
    END IF;
    RETURN NULL;
END;
$$;
