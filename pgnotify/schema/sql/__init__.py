"""The functions pgnotify installs, one .sql file each, as they are now (the migrations put them in
place with pgnotify.schema.functions)."""

from importlib.resources import files

FILES = ("log_changes.sql", "invalidate_cache.sql")
CHANGE_FUNCTION = "pgnotify_log_changes"  # in log_changes.sql
CACHE_FUNCTION = "pgnotify_invalidate_cache"  # in invalidate_cache.sql
# The comment of each watched table's own change function (pgnotify/schema/table_function.py).
OWN_COMMENT = "pgnotify: a watched table's change function"
DROP = """
    DO $drop$
    DECLARE
        own regprocedure;
    BEGIN
        -- Each watched table's own change function (pgnotify/schema/table_function.py).
        FOR own IN SELECT p.oid FROM pg_proc p
                    WHERE p.pronamespace = (SELECT pronamespace FROM pg_proc
                                             WHERE oid = to_regproc('pgnotify_log_changes'))
                      AND obj_description(p.oid, 'pg_proc') = '""" + OWN_COMMENT.replace("'", "''") + """' LOOP
            EXECUTE format('DROP FUNCTION %s CASCADE', own);
        END LOOP;
    END;
    $drop$;
    DROP FUNCTION IF EXISTS pgnotify_log_changes() CASCADE;
    DROP FUNCTION IF EXISTS pgnotify_jsonb_row(anyelement, regclass);
    DROP FUNCTION IF EXISTS pgnotify_invalidate_cache() CASCADE;
"""


def load_sql(name: str) -> str:
    return files(__package__).joinpath(name).read_text()


def functions_sql() -> str:
    return "\n".join(load_sql(name) for name in FILES)
