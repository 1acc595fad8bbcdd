"""Attach, refresh and drop the triggers of watched tables.

Each trigger carries a hash of its definition in its comment (as django-pgtrigger does),
so `migrate` rewrites only the triggers whose definition changed.
"""

import hashlib
import logging

from django.apps import apps
from django.db import connections
from psycopg import sql

from . import conf

logger = logging.getLogger(__name__)

CHANGE_TRIGGER = "pgnotify_change"
CACHE_TRIGGER = "pgnotify_cache"

_CHANGE = sql.SQL(
    "CREATE OR REPLACE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION pgnotify_notify_change({channel}, {label}, {pk}, {excluded})"
)
_CACHE = sql.SQL(
    "CREATE OR REPLACE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_invalidate_cache({tags})"
)
_INSTALLED = """
    SELECT c.relname, t.tgname, coalesce(obj_description(t.oid, 'pg_trigger'), '')
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE t.tgname IN (%s, %s) AND NOT t.tgisinternal
       AND c.relnamespace = current_schema()::regnamespace
"""


def _array_literal(values) -> str:
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def desired_triggers() -> dict[tuple[str, str], sql.Composed]:
    """(table, trigger name) -> CREATE statement, for every watched and cached model."""
    wanted = {}
    for label, options in conf.watch().items():
        model = apps.get_model(label)
        table = model._meta.db_table
        wanted[(table, CHANGE_TRIGGER)] = _CHANGE.format(
            name=sql.Identifier(CHANGE_TRIGGER),
            table=sql.Identifier(table),
            channel=sql.Literal(options["channel"]),
            label=sql.Literal(model._meta.label_lower),
            pk=sql.Literal(model._meta.pk.column),
            excluded=sql.Literal(_array_literal(_excluded_columns(model, options))),
        )
    for label, tags in conf.get("CACHE_INVALIDATE").items():
        table = apps.get_model(label)._meta.db_table
        wanted[(table, CACHE_TRIGGER)] = _CACHE.format(
            name=sql.Identifier(CACHE_TRIGGER),
            table=sql.Identifier(table),
            tags=sql.SQL(", ").join(sql.Literal(tag) for tag in tags),
        )
    return wanted


def _excluded_columns(model, options) -> list[str]:
    return [model._meta.get_field(name).column for name in options.get("exclude", [])]


def _functions_installed(cursor) -> bool:
    cursor.execute("SELECT to_regprocedure('pgnotify_notify_change()') IS NOT NULL")
    return cursor.fetchone()[0]


def sync_triggers(using: str = "default") -> list[str]:
    """Make the database's pgnotify triggers match the settings; returns what changed."""
    connection = connections[using]
    actions = []
    with connection.cursor() as cursor:
        if not _functions_installed(cursor):
            return actions
        raw = cursor.connection
        cursor.execute(_INSTALLED, [CHANGE_TRIGGER, CACHE_TRIGGER])
        installed = {(table, name): comment for table, name, comment in cursor.fetchall()}
        wanted = desired_triggers()
        for (table, name), statement in wanted.items():
            text = statement.as_string(raw)
            stamp = "pgnotify:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            if installed.get((table, name)) == stamp:
                continue
            cursor.execute(text)
            comment = sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                sql.Identifier(name), sql.Identifier(table), sql.Literal(stamp)
            )
            cursor.execute(comment.as_string(raw))
            actions.append(f"{'refreshed' if (table, name) in installed else 'attached'} {name} on {table}")
        for table, name in installed.keys() - wanted.keys():
            drop = sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(name), sql.Identifier(table))
            cursor.execute(drop.as_string(raw))
            actions.append(f"dropped {name} on {table}")
    for action in actions:
        logger.debug("pgnotify: %s", action)
    return actions


def sync_triggers_after_migrate(sender, using="default", verbosity=1, **kwargs):
    if connections[using].vendor != "postgresql":
        return
    for action in sync_triggers(using):
        if verbosity >= 1:
            print(f"  pgnotify: {action}")
