DROP FUNCTION IF EXISTS pgnotify_notify_change() CASCADE;
