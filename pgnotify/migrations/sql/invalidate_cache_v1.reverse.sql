DROP FUNCTION IF EXISTS pgnotify_invalidate_cache() CASCADE;
