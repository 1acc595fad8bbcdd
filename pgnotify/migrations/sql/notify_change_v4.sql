-- Statement-level AFTER trigger of a watched table, one per operation (PostgreSQL allows
-- transition tables only on single-event triggers). v3's design, for every shape of table a
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
--   IntervalStyle.
-- As in v3: one statement per target logs the statement's events in pgnotify_event (same
-- transaction as the change) and, for a statement of at most `individual_limit` rows, sends each
-- event from the rows it has just written; a larger statement sends one chunk notification per
-- `chunk_size` event ids, {"chunk": [first_id, last_id], "txid", "table", "op"}, which the
-- listener expands from the log. No SET clauses on the function (each costs a settings save and
-- restore per call): what a statement needs it sets transaction-locally and puts back.
-- Arguments: key columns (array literal), event table, options ('iso_intervals' or ''), then
-- per target: channel, model label, excluded columns (array literal).
CREATE OR REPLACE FUNCTION pgnotify_notify_change_v4() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    individual_limit constant int := 32;
    chunk_size constant int := 1000;
    keys text[] := TG_ARGV[0]::text[];
    key text := keys[1];
    composite boolean := cardinality(keys) > 1;
    event_table text := TG_ARGV[1];
    iso_intervals boolean := TG_ARGV[2] = 'iso_intervals';
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
    target int := 3;
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
        non_key := coalesce(non_key, '{}');
    END IF;

    WHILE target < TG_NARGS LOOP
        event_channel := TG_ARGV[target];
        label := TG_ARGV[target + 1];
        excluded := TG_ARGV[target + 2]::text[];
        target := target + 3;
        -- Each statement below notifies its events as it reads back the rows it wrote, in the order
        -- of their ids. NOTIFY refuses payloads of 8000 bytes or more: a bigger event goes without
        -- its row, which the listener restores from the log. FILTER: a bulk statement sends none.
        IF TG_OP = 'INSERT' THEN
            WITH logged AS (
                INSERT INTO pgnotify_event (id, channel, txid, payload)
                SELECT e.id, event_channel, xact, jsonb_build_object(
                           'id', e.id, 'channel', event_channel, 'table', event_table, 'model', label,
                           'op', TG_OP, 'pk', CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END,
                           'ts', ts, 'txid', txid, 'row', e.whole - excluded)
                  FROM (SELECT nextval('pgnotify_event_id_seq') AS id, to_jsonb(r) AS whole FROM new_rows r) e
                RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(payload::text) < 8000 THEN payload::text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged;
        ELSIF TG_OP = 'DELETE' THEN
            WITH logged AS (
                INSERT INTO pgnotify_event (id, channel, txid, payload)
                SELECT e.id, event_channel, xact, jsonb_build_object(
                           'id', e.id, 'channel', event_channel, 'table', event_table, 'model', label,
                           'op', TG_OP, 'pk', CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END,
                           'ts', ts, 'txid', txid, 'row', e.whole - excluded)
                  FROM (SELECT nextval('pgnotify_event_id_seq') AS id, to_jsonb(r) AS whole FROM old_rows r) e
                RETURNING id, payload)
            SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                       WHEN octet_length(payload::text) < 8000 THEN payload::text
                       ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
              INTO first_id, last_id, events, notified
              FROM logged;
        ELSE
            -- `changed` follows the column order of the partitioned table a partition belongs to.
            SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO visible
              FROM pg_attribute a
             WHERE a.attrelid = coalesce(pg_partition_root(TG_RELID), TG_RELID::regclass)
               AND a.attnum > 0 AND NOT a.attisdropped AND a.attname::text <> ALL (excluded);
            -- Old and new rows are paired on the key (a row whose key changed finds no old row:
            -- every visible column counts as changed). MATERIALIZED: each row is rendered once.
            WITH new_json AS MATERIALIZED (SELECT to_jsonb(r) AS whole FROM new_rows r),
                 old_json AS MATERIALIZED (SELECT to_jsonb(r) AS whole FROM old_rows r),
                 pairs AS MATERIALIZED (
                    SELECT n.whole,
                           -- In column order: unnest yields the array in order.
                           ARRAY(SELECT v.name FROM unnest(visible) AS v(name)
                                  WHERE n.whole -> v.name IS DISTINCT FROM o.whole -> v.name) AS changed
                      FROM new_json n LEFT JOIN old_json o
                        ON CASE WHEN composite THEN o.whole - non_key ELSE o.whole -> key END
                         = CASE WHEN composite THEN n.whole - non_key ELSE n.whole -> key END),
                 logged AS (
                    INSERT INTO pgnotify_event (id, channel, txid, payload)
                    SELECT e.id, event_channel, xact, jsonb_build_object(
                               'id', e.id, 'channel', event_channel, 'table', event_table, 'model', label,
                               'op', TG_OP, 'pk', CASE WHEN composite THEN e.whole - non_key ELSE e.whole -> key END,
                               'ts', ts, 'txid', txid, 'row', e.whole - excluded, 'changed', to_jsonb(e.changed))
                      FROM (SELECT nextval('pgnotify_event_id_seq') AS id, p.whole, p.changed
                              FROM pairs p
                             -- Nothing the subscribers may see changed (only excluded columns, or none).
                             WHERE p.changed <> '{}') e
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
