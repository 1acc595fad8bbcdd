DROP FUNCTION IF EXISTS pgnotify_notify_change_v4() CASCADE;
