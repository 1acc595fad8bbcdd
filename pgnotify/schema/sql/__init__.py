"""The functions pgnotify installs, one .sql file each, as they are now (the migrations put them in
place with pgnotify.schema.functions)."""

from importlib.resources import files

FILES = ("log_changes.sql", "invalidate_cache.sql")
CHANGE_FUNCTION = "pgnotify_log_changes"  # in log_changes.sql
CACHE_FUNCTION = "pgnotify_invalidate_cache"  # in invalidate_cache.sql
DROP = """
    DROP FUNCTION IF EXISTS pgnotify_log_changes() CASCADE;
    DROP FUNCTION IF EXISTS pgnotify_jsonb_row(anyelement, regclass);
    DROP FUNCTION IF EXISTS pgnotify_invalidate_cache() CASCADE;
"""


def load_sql(name: str) -> str:
    return files(__package__).joinpath(name).read_text()


def functions_sql() -> str:
    return "\n".join(load_sql(name) for name in FILES)
