-- Statement-level AFTER trigger of a watched table, one per operation (PostgreSQL allows
-- transition tables only on single-event triggers). Same events and notifications as v2, cheaper:
-- one statement per call logs every change event of the statement in pgnotify_event (same
-- transaction as the change) and, for a statement of at most `individual_limit` rows, sends
-- each event from the rows it has just written; a larger statement sends one chunk notification
-- per `chunk_size` event ids, {"chunk": [first_id, last_id], "txid", "table", "op"}, which the
-- listener expands from the log. No SET clauses on the function (each costs a settings save and
-- restore per call): a bulk statement sets jit and work_mem for itself, transaction-locally,
-- and puts them back.
-- Arguments: channel, model label, primary key column, excluded columns (array literal).
CREATE OR REPLACE FUNCTION pgnotify_notify_change_v3() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    individual_limit constant int := 32;
    chunk_size constant int := 1000;
    event_channel text := TG_ARGV[0];
    excluded text[] := TG_ARGV[3]::text[];
    pk text := TG_ARGV[2];
    -- One timestamp per statement: the time the trigger ran.
    ts jsonb := to_jsonb(clock_timestamp());
    xact xid8 := pg_current_xact_id();
    statement_rows bigint;
    each_event boolean;
    saved_jit text;
    saved_work_mem text;
    saved_mergejoin text;
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

    -- Each statement below notifies its events as it reads back the rows it wrote, in the order
    -- of their ids. NOTIFY refuses payloads of 8000 bytes or more: a bigger event goes without
    -- its row, which the listener restores from the log. FILTER: a bulk statement sends none.
    IF TG_OP = 'INSERT' THEN
        WITH logged AS (
            INSERT INTO pgnotify_event (id, channel, txid, payload)
            SELECT e.id, event_channel, xact, jsonb_build_object(
                       'id', e.id, 'channel', event_channel, 'table', TG_TABLE_NAME, 'model', TG_ARGV[1],
                       'op', TG_OP, 'pk', e.row_data -> pk, 'ts', ts, 'txid', xact::text::bigint,
                       'row', e.row_data)
              FROM (SELECT nextval('pgnotify_event_id_seq') AS id, to_jsonb(r) - excluded AS row_data
                      FROM new_rows r) e
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
                       'id', e.id, 'channel', event_channel, 'table', TG_TABLE_NAME, 'model', TG_ARGV[1],
                       'op', TG_OP, 'pk', e.row_data -> pk, 'ts', ts, 'txid', xact::text::bigint,
                       'row', e.row_data)
              FROM (SELECT nextval('pgnotify_event_id_seq') AS id, to_jsonb(r) - excluded AS row_data
                      FROM old_rows r) e
            RETURNING id, payload)
        SELECT min(id), max(id), count(*), count(pg_notify(event_channel, CASE
                   WHEN octet_length(payload::text) < 8000 THEN payload::text
                   ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END)) FILTER (WHERE each_event)
          INTO first_id, last_id, events, notified
          FROM logged;
    ELSE
        SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO visible
          FROM pg_attribute a
         WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname::text <> ALL (excluded);
        -- Old and new rows are paired by primary key (a row whose key changed finds no old row:
        -- every visible column counts as changed). MATERIALIZED: each row is rendered once.
        WITH new_json AS MATERIALIZED (SELECT to_jsonb(r) AS whole FROM new_rows r),
             old_json AS MATERIALIZED (SELECT to_jsonb(r) AS whole FROM old_rows r),
             pairs AS MATERIALIZED (
                SELECT n.whole - excluded AS row_data,
                       -- In column order: unnest yields the array in order.
                       ARRAY(SELECT v.name FROM unnest(visible) AS v(name)
                              WHERE n.whole -> v.name IS DISTINCT FROM o.whole -> v.name) AS changed,
                       n.whole IS DISTINCT FROM o.whole AS touched
                  FROM new_json n LEFT JOIN old_json o ON o.whole -> pk = n.whole -> pk),
             logged AS (
                INSERT INTO pgnotify_event (id, channel, txid, payload)
                SELECT e.id, event_channel, xact, jsonb_build_object(
                           'id', e.id, 'channel', event_channel, 'table', TG_TABLE_NAME, 'model', TG_ARGV[1],
                           'op', TG_OP, 'pk', e.row_data -> pk, 'ts', ts, 'txid', xact::text::bigint,
                           'row', e.row_data, 'changed', to_jsonb(e.changed))
                  FROM (SELECT nextval('pgnotify_event_id_seq') AS id, p.row_data, p.changed
                          FROM pairs p
                         -- Only excluded columns changed: there is nothing the subscribers may see.
                         WHERE p.changed <> '{}' OR NOT p.touched) e
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
                'txid', xact::text::bigint, 'table', TG_TABLE_NAME, 'op', TG_OP)::text);
            chunk_first := chunk_first + chunk_size;
        END LOOP;
        PERFORM set_config('jit', saved_jit, true), set_config('work_mem', saved_work_mem, true),
                set_config('enable_mergejoin', saved_mergejoin, true);
    END IF;
    RETURN NULL;
END;
$$;
