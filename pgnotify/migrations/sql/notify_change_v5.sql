-- Statement-level AFTER trigger of a watched table, one per operation (PostgreSQL allows
-- transition tables only on single-event triggers). v5 is v4 that never makes a valid write fail:
-- a json column may hold what jsonb refuses (a lone surrogate escape, \u0000), and to_jsonb of
-- its row fails. A table with a json column (option 'json') renders its rows through
-- pgnotify_jsonb_row_v5, which carries such a value as its JSON text and names its column in the
-- event's `as_text` (docs/models.md); every other table renders them with to_jsonb as v4 did, at
-- no cost more. v4, for every shape of table a Django model can have (docs/models.md):
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
--   IntervalStyle.
-- As in v3: one statement per target logs the statement's events in pgnotify_event (same
-- transaction as the change) and, for a statement of at most `individual_limit` rows, sends each
-- event from the rows it has just written; a larger statement sends one chunk notification per
-- `chunk_size` event ids, {"chunk": [first_id, last_id], "txid", "table", "op"}, which the
-- listener expands from the log. No SET clauses on the function (each costs a settings save and
-- restore per call): what a statement needs it sets transaction-locally and puts back.
-- An UPDATE pairs old and new rows on the table's own key when it only holds the model's (a table
-- partitioned on ts: PRIMARY KEY (id, ts), the model keyed on id): a row whose ts changed is
-- still the same row; `pk` stays the model's key.
-- Arguments: key columns (array literal), event table, options (comma-separated: 'iso_intervals',
-- 'json'; or ''), the columns rows are paired on (array literal), then per target: channel, model
-- label, excluded columns (array literal).

-- A row of a table with a json column as to_jsonb renders it; a value jsonb refuses is its JSON
-- text, and the row's key '' (no column can have that name) lists those columns in jsonb's key
-- order. Only a \u escape can make jsonb refuse what json took: the trigger calls this only for
-- a row whose text holds one, so no other row enters its EXCEPTION block (a subtransaction each
-- time). Only on that path are the columns read one by one: a transition table's row is a
-- record, made the table's row type through its text.
CREATE OR REPLACE FUNCTION pgnotify_jsonb_row_v5(whole anyelement, relation regclass) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION pgnotify_notify_change_v5() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    individual_limit constant int := 32;
    chunk_size constant int := 1000;
    keys text[] := TG_ARGV[0]::text[];
    key text := keys[1];
    composite boolean := cardinality(keys) > 1;
    event_table text := TG_ARGV[1];
    options text[] := string_to_array(TG_ARGV[2], ',');
    iso_intervals boolean := 'iso_intervals' = ANY (options);
    with_json boolean := 'json' = ANY (options);
    -- One timestamp per statement: the time the trigger ran.
    ts jsonb := to_jsonb(clock_timestamp());
    xact xid8 := pg_current_xact_id();
    txid bigint := xact::text::bigint;
    statement_rows bigint;
    each_event boolean;
    saved_jit text;
    saved_work_mem text;
    saved_mergejoin text;
    saved_intervalstyle text;
    non_key text[];
    pair_keys text[] := TG_ARGV[3]::text[];
    pair_non_key text[];  -- set when rows are paired on other columns than the key
    target int := 4;
    event_channel text;
    label text;
    excluded text[];
    visible text[];
    first_id bigint;
    last_id bigint;
    events bigint;
    notified bigint;
    chunk_first bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO statement_rows FROM old_rows;
    ELSE
        SELECT count(*) INTO statement_rows FROM new_rows;
    END IF;
    IF statement_rows = 0 THEN
        RETURN NULL;
    END IF;
    each_event := statement_rows <= individual_limit;
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
                  FROM (SELECT e.id, e.whole, jsonb_build_object(
                           'id', e.id, 'channel', event_channel, 'table', event_table, 'model', label,
                           'op', TG_OP, 'pk', CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END,
                           'ts', ts, 'txid', txid, 'row', e.whole - excluded) AS payload
                          FROM (SELECT nextval('pgnotify_event_id_seq') AS id, CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                           THEN pgnotify_jsonb_row_v5(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                                  FROM new_rows r) e) p
                RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(payload::text) < 8000 THEN payload::text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged;
        ELSIF TG_OP = 'DELETE' THEN
            WITH logged AS (
                INSERT INTO pgnotify_event (id, channel, txid, payload)
                SELECT p.id, event_channel, xact, CASE WHEN with_json AND p.whole ? ''
                           THEN p.payload || jsonb_build_object('as_text', p.whole -> '') ELSE p.payload END
                  FROM (SELECT e.id, e.whole, jsonb_build_object(
                           'id', e.id, 'channel', event_channel, 'table', event_table, 'model', label,
                           'op', TG_OP, 'pk', CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END,
                           'ts', ts, 'txid', txid, 'row', e.whole - excluded) AS payload
                          FROM (SELECT nextval('pgnotify_event_id_seq') AS id, CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                           THEN pgnotify_jsonb_row_v5(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                                  FROM old_rows r) e) p
                RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(payload::text) < 8000 THEN payload::text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged;
        ELSE
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
            -- MATERIALIZED: each row is rendered once.
            WITH new_json AS MATERIALIZED (
                    SELECT CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                THEN pgnotify_jsonb_row_v5(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
                      FROM new_rows r),
                 old_json AS MATERIALIZED (
                    SELECT CASE WHEN with_json AND strpos(r::text, '\u') > 0
                                THEN pgnotify_jsonb_row_v5(r, TG_RELID::regclass) ELSE to_jsonb(r) END AS whole
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
                      FROM (SELECT e.id, e.whole, jsonb_build_object(
                               'id', e.id, 'channel', event_channel, 'table', event_table, 'model', label,
                               'op', TG_OP, 'pk', CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END,
                               'ts', ts, 'txid', txid, 'row', e.whole - excluded, 'changed', to_jsonb(e.changed))
                               AS payload
                              FROM (SELECT nextval('pgnotify_event_id_seq') AS id, p.whole, p.changed
                                      FROM pairs p
                                     -- Nothing the subscribers may see changed (only excluded columns, or none).
                                     WHERE p.changed <> '{}') e) l
                    RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(payload::text) < 8000 THEN payload::text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged;
        END IF;

        IF NOT each_event THEN
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
