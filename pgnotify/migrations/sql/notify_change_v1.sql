-- Row-level AFTER trigger of a watched table: logs the change event in pgnotify_event
-- (same transaction as the change) and sends it with pg_notify.
-- Arguments: channel, model label, primary key column, excluded columns (array literal).
CREATE OR REPLACE FUNCTION pgnotify_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    excluded text[] := TG_ARGV[3]::text[];
    row_data jsonb;
    old_data jsonb;
    changed text[];
    event jsonb;
    message text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_data := to_jsonb(OLD) - excluded;
    ELSE
        row_data := to_jsonb(NEW) - excluded;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        old_data := to_jsonb(OLD) - excluded;
        SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') INTO changed
          FROM pg_attribute a
         WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
           AND row_data -> a.attname::text IS DISTINCT FROM old_data -> a.attname::text;
        -- Only excluded columns changed: there is nothing the subscribers may see.
        IF changed = '{}' AND to_jsonb(NEW) IS DISTINCT FROM to_jsonb(OLD) THEN
            RETURN NULL;
        END IF;
    END IF;

    event := jsonb_build_object(
        'id', nextval('pgnotify_event_id_seq'),
        'channel', TG_ARGV[0],
        'table', TG_TABLE_NAME,
        'model', TG_ARGV[1],
        'op', TG_OP,
        'pk', row_data -> TG_ARGV[2],
        'ts', clock_timestamp(),
        'txid', pg_current_xact_id()::text::bigint,
        'row', row_data);
    IF TG_OP = 'UPDATE' THEN
        event := event || jsonb_build_object('changed', changed);
    END IF;

    INSERT INTO pgnotify_event (id, channel, txid, payload)
    VALUES ((event ->> 'id')::bigint, TG_ARGV[0], pg_current_xact_id(), event);

    -- NOTIFY refuses payloads of 8000 bytes or more; the listener restores the row from the log.
    message := event::text;
    IF octet_length(message) >= 8000 THEN
        message := (event - 'row' || '{"truncated": true}'::jsonb)::text;
    END IF;
    PERFORM pg_notify(TG_ARGV[0], message);
    RETURN NULL;
END;
$$;
