"""Reading pgnotify's objects in a database, and `manage.py` run against any database (the tests of
migrations and rights)."""

import subprocess
import sys

from tests.helpers import support

PGNOTIFY_OBJECTS = """
    SELECT 'function ' || regexp_replace(proname, '^(pgnotify_change_.*)_[0-9a-f]{12}$', '\\1 (own)')
      FROM pg_proc WHERE proname LIKE 'pgnotify%%'
    UNION ALL SELECT 'relation ' || relname FROM pg_class WHERE relname LIKE 'pgnotify%%'
    UNION ALL SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass FROM pg_trigger WHERE tgname LIKE 'pgnotify%%'
"""
TRIGGER_COMMENTS = """
    SELECT c.relname || '.' || t.tgname, obj_description(t.oid, 'pg_trigger')
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE 'pgnotify%%'
"""
# Change triggers calling anything but their table's own function, and own functions no trigger calls.
STRAY_FUNCTIONS = """
    SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass || ' calls ' || p.proname
      FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgname LIKE 'pgnotify_change%%' AND p.proname NOT LIKE 'pgnotify\\_change\\_%%'
    UNION ALL
    SELECT 'function ' || p.proname || ' is called by no trigger' FROM pg_proc p
     WHERE p.proname LIKE 'pgnotify\\_change\\_%%' AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid)
"""
SLOTS = "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"


def manage(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(support.ROOT / "manage.py"), *args], cwd=support.ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=support.process_env(DATABASE_URL=database_url, **env))


def query(conn, statement: str) -> set:
    return set(conn.execute(statement).fetchall())
