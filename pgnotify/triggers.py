"""Attach, refresh and drop the triggers of watched tables.

Each trigger carries a hash of its definition in its comment (as django-pgtrigger does),
so `migrate` rewrites only the triggers whose definition changed.

The change trigger of a table is statement-level (pgnotify_notify_change_v3, migration 0004;
v2 of migration 0003 where only that is applied): PostgreSQL allows transition tables only on
single-event triggers, so it is three triggers, `pgnotify_change` (UPDATE, carrying the hash of
all three) and its INSERT and DELETE parts. With only migration 0001 applied, the row-level v1
function is attached instead.
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

CHANGE_PARTS = {"pgnotify_change_insert": "INSERT", "pgnotify_change_delete": "DELETE"}
# A part's comment names the trigger whose hash covers it (and never changes by itself).
PART_COMMENT = "pgnotify: part of pgnotify_change"

_CHANGE_V1 = sql.SQL(
    "CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION pgnotify_notify_change({channel}, {label}, {pk}, {excluded})"
)
_CHANGE_V2 = {
    "UPDATE": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "INSERT": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows",
    "DELETE": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows",
}
_CHANGE_V2_EXECUTE = " FOR EACH STATEMENT EXECUTE FUNCTION {function}({channel}, {label}, {pk}, {excluded})"
# Statement-level change functions, newest first: the newest installed one is attached.
STATEMENT_FUNCTIONS = ["pgnotify_notify_change_v3", "pgnotify_notify_change_v2"]
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


def _change_statements(table: str, arguments: dict, function: str | None) -> sql.Composed:
    """The CREATE statements of a table's change trigger (and its parts), as one; `function` is
    the statement-level function to attach, None for the row-level v1."""
    if function is None:
        return _CHANGE_V1.format(name=sql.Identifier(CHANGE_TRIGGER), table=sql.Identifier(table), **arguments)
    names = {"UPDATE": CHANGE_TRIGGER, **{op: name for name, op in CHANGE_PARTS.items()}}
    return sql.SQL("; ").join(
        sql.SQL("CREATE TRIGGER {name} " + _CHANGE_V2[op] + _CHANGE_V2_EXECUTE).format(
            name=sql.Identifier(names[op]), table=sql.Identifier(table), function=sql.Identifier(function),
            **arguments)
        for op in ("UPDATE", "INSERT", "DELETE"))


def desired_triggers(function: str | None = STATEMENT_FUNCTIONS[0]) -> dict[tuple[str, str], sql.Composed]:
    """(table, trigger name) -> CREATE statement(s), for every watched and cached model; `function`
    is the statement-level change function (None: the row-level v1). None with the WAL source,
    whose publication (pgnotify.publication) takes their place."""
    wanted = {}
    if conf.source() == "wal":
        return wanted
    for label, options in conf.watch().items():
        model = apps.get_model(label)
        table = model._meta.db_table
        arguments = {
            "channel": sql.Literal(options["channel"]),
            "label": sql.Literal(model._meta.label_lower),
            "pk": sql.Literal(model._meta.pk.column),
            "excluded": sql.Literal(_array_literal(_excluded_columns(model, options))),
        }
        wanted[(table, CHANGE_TRIGGER)] = _change_statements(table, arguments, function)
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


def _installed_functions(cursor) -> tuple[bool, str | None]:
    """Whether the row-level (v1) change function is installed, and the newest statement-level one."""
    names = ["pgnotify_notify_change", *STATEMENT_FUNCTIONS]
    cursor.execute("SELECT " + ", ".join("to_regprocedure(%s) IS NOT NULL" for _ in names), [f"{n}()" for n in names])
    v1, *statement_level = cursor.fetchone()
    return v1, next((name for name, there in zip(STATEMENT_FUNCTIONS, statement_level, strict=True) if there), None)


def _drop(table: str, name: str) -> sql.Composed:
    """DROP statements of a trigger, with its parts for the change trigger."""
    names = [name, *CHANGE_PARTS] if name == CHANGE_TRIGGER else [name]
    return sql.SQL("; ").join(
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(n), sql.Identifier(table)) for n in names)


def sync_triggers(using: str = "default") -> list[str]:
    """Make the database's pgnotify triggers match the settings; returns what changed."""
    connection = connections[using]
    actions = []
    with connection.cursor() as cursor:
        v1, function = _installed_functions(cursor)
        if not (v1 or function):
            return actions
        raw = cursor.connection
        cursor.execute(_INSTALLED, [CHANGE_TRIGGER, CACHE_TRIGGER])
        installed = {(table, name): comment for table, name, comment in cursor.fetchall()}
        wanted = desired_triggers(function)
        for (table, name), statement in wanted.items():
            text = statement.as_string(raw)
            stamp = "pgnotify:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            if installed.get((table, name)) == stamp:
                continue
            # Dropped first: a row-level trigger cannot be replaced by a statement-level one.
            cursor.execute(_drop(table, name).as_string(raw))
            cursor.execute(text)
            comments = [(name, stamp)]
            if name == CHANGE_TRIGGER and function:
                comments += [(part, PART_COMMENT) for part in CHANGE_PARTS]
            for trigger, comment in comments:
                cursor.execute(sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                    sql.Identifier(trigger), sql.Identifier(table), sql.Literal(comment)).as_string(raw))
            actions.append(f"{'refreshed' if (table, name) in installed else 'attached'} {name} on {table}")
        for table, name in installed.keys() - wanted.keys():
            cursor.execute(_drop(table, name).as_string(raw))
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
