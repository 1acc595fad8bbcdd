-- Statement-level AFTER trigger of a watched table, one per operation (PostgreSQL allows
-- transition tables only on single-event triggers): logs every change event of the statement
-- in pgnotify_event with one INSERT ... SELECT from the transition tables, in the same
-- transaction as the change, then notifies. A statement that touched at most `individual_limit`
-- rows sends each event, exactly as the row-level v1 did; a larger one sends one chunk
-- notification per `chunk_size` event ids, {"chunk": [first_id, last_id], "txid", "table", "op"},
-- which the listener expands into the events from the log, one query per chunk.
-- Arguments: channel, model label, primary key column, excluded columns (array literal).
CREATE OR REPLACE FUNCTION pgnotify_notify_change_v2() RETURNS trigger
LANGUAGE plpgsql
-- The transition tables have no statistics: a bulk statement's estimates can cross the JIT
-- threshold, and compiling costs more than the query.
SET jit = off
-- Pairing old and new rows of a bulk statement in memory (a hash join), not in sorted temp files.
SET work_mem = '64MB'
AS $$
DECLARE
    individual_limit constant int := 32;
    chunk_size constant int := 1000;
    event_channel text := TG_ARGV[0];
    excluded text[] := TG_ARGV[3]::text[];
    pk text := TG_ARGV[2];
    -- One timestamp per statement: the time the trigger ran.
    ts jsonb := to_jsonb(clock_timestamp());
    xact xid8 := pg_current_xact_id();
    visible text[];
    first_id bigint;
    last_id bigint;
    events bigint;
    message text;
    chunk_first bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH logged AS (
            INSERT INTO pgnotify_event (id, channel, txid, payload)
            SELECT e.id, event_channel, xact, jsonb_build_object(
                       'id', e.id, 'channel', event_channel, 'table', TG_TABLE_NAME, 'model', TG_ARGV[1],
                       'op', TG_OP, 'pk', e.row_data -> pk, 'ts', ts, 'txid', xact::text::bigint,
                       'row', e.row_data)
              FROM (SELECT nextval('pgnotify_event_id_seq') AS id, to_jsonb(r) - excluded AS row_data
                      FROM new_rows r) e
            RETURNING id)
        SELECT min(id), max(id), count(*) INTO first_id, last_id, events FROM logged;
    ELSIF TG_OP = 'DELETE' THEN
        WITH logged AS (
            INSERT INTO pgnotify_event (id, channel, txid, payload)
            SELECT e.id, event_channel, xact, jsonb_build_object(
                       'id', e.id, 'channel', event_channel, 'table', TG_TABLE_NAME, 'model', TG_ARGV[1],
                       'op', TG_OP, 'pk', e.row_data -> pk, 'ts', ts, 'txid', xact::text::bigint,
                       'row', e.row_data)
              FROM (SELECT nextval('pgnotify_event_id_seq') AS id, to_jsonb(r) - excluded AS row_data
                      FROM old_rows r) e
            RETURNING id)
        SELECT min(id), max(id), count(*) INTO first_id, last_id, events FROM logged;
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
                       ARRAY(SELECT v.name FROM unnest(visible) WITH ORDINALITY AS v(name, position)
                              WHERE n.whole -> v.name IS DISTINCT FROM o.whole -> v.name
                              ORDER BY v.position) AS changed,
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
                RETURNING id)
        SELECT min(id), max(id), count(*) INTO first_id, last_id, events FROM logged;
    END IF;

    IF events = 0 THEN
        RETURN NULL;
    ELSIF events <= individual_limit THEN
        -- NOTIFY refuses payloads of 8000 bytes or more; the listener restores the row from the log.
        FOR message IN
            SELECT CASE WHEN octet_length(payload::text) < 8000 THEN payload::text
                        ELSE (payload - 'row' || '{"truncated": true}'::jsonb)::text END
              FROM pgnotify_event WHERE id BETWEEN first_id AND last_id AND txid = xact
             ORDER BY id
        LOOP
            PERFORM pg_notify(event_channel, message);
        END LOOP;
    ELSE
        chunk_first := first_id;
        WHILE chunk_first <= last_id LOOP
            PERFORM pg_notify(event_channel, jsonb_build_object(
                'chunk', jsonb_build_array(chunk_first, least(chunk_first + chunk_size - 1, last_id)),
                'txid', xact::text::bigint, 'table', TG_TABLE_NAME, 'op', TG_OP)::text);
            chunk_first := chunk_first + chunk_size;
        END LOOP;
    END IF;
    RETURN NULL;
END;
$$;
