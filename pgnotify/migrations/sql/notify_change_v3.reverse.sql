DROP FUNCTION IF EXISTS pgnotify_notify_change_v3() CASCADE;
