DROP FUNCTION IF EXISTS pgnotify_notify_change_v5() CASCADE;
DROP FUNCTION IF EXISTS pgnotify_jsonb_row_v5(anyelement, regclass);
