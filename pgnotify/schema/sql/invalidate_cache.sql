-- Statement-level AFTER trigger: one notification per statement on 'cache_invalidate'
-- naming the table's cache tags (the trigger's arguments).
CREATE OR REPLACE FUNCTION pgnotify_invalidate_cache() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cache_invalidate', jsonb_build_object(
        'table', TG_TABLE_NAME, 'op', TG_OP, 'tags', to_jsonb(TG_ARGV))::text);
    RETURN NULL;
END;
$$;
