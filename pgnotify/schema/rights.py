"""Least privilege (docs/operations.md, "Rights"): what each part of pgnotify needs of the
database role, and the SQL `migrate` would run, recorded instead of run, for a DBA to apply by
hand where the application's role may not create functions or triggers (`manage.py pgnotify_sql`).

The change trigger functions are not SECURITY DEFINER: they run as the writer, who therefore
needs INSERT and SELECT (for INSERT ... RETURNING) on pgnotify_event and USAGE on its sequence.
"""

import re
from collections.abc import Sequence

from django.apps import apps
from django.db import DatabaseError, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from .install import schema_syncs

EVENT_SEQUENCE = "pgnotify_event_id_seq"
# (table, privileges): what a writer needs with the NOTIFY source, what a listener needs.
WRITER = [("pgnotify_event", "INSERT, SELECT")]
LISTENER = [("pgnotify_event", "SELECT, DELETE"), ("pgnotify_listener", "SELECT, INSERT, UPDATE, DELETE")]
DML = "SELECT, INSERT, UPDATE, DELETE"
# Statements that change the database: a dry run records them instead of running them. The rest
# (the catalogue's SELECTs, savepoints) runs.
_CHANGES = re.compile(r"\s*(CREATE|DROP|ALTER|COMMENT|GRANT|REVOKE|INSERT|UPDATE|DELETE|TRUNCATE)\b", re.IGNORECASE)
AGAIN = ("-- pgnotify: the triggers need the functions above: once this is applied, run "
         "`manage.py pgnotify_sql` again for them.")


def missing(cursor, table: str, privileges: str) -> list[str]:
    """The privileges of `privileges` the current role lacks on `table` (none when it does not exist)."""
    cursor.execute("SELECT p FROM unnest(%s::text[]) p WHERE to_regclass(%s) IS NOT NULL "
                   "AND NOT has_table_privilege(%s, p) ", [privileges.split(", "), table, table])
    return [privilege for (privilege,) in cursor.fetchall()]


def sequence_usage_missing(cursor) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL AND NOT has_sequence_privilege(%s, 'USAGE')",
                   [EVENT_SEQUENCE, EVENT_SEQUENCE])
    return cursor.fetchone()[0]


def grants(rights: list[tuple[str, str]], role: str) -> str:
    return " ".join(f"GRANT {privileges} ON {table} TO {role};" for table, privileges in rights)


# -- what `migrate` would run

def _pgnotify_apps() -> list:
    return [config for config in apps.get_app_configs()
            if config.name == "pgnotify" or config.name.startswith("pgnotify.")]


def _pgnotify_labels(loader) -> list[str]:
    return [config.label for config in _pgnotify_apps() if config.label in loader.migrated_apps]


def pending_migrations(using: str) -> list:
    """The migrations `migrate` would apply to bring pgnotify's apps up to date, in order."""
    executor = MigrationExecutor(connections[using])
    targets = [node for label in _pgnotify_labels(executor.loader) for node in executor.loader.graph.leaf_nodes(label)]
    return [migration for migration, backwards in executor.migration_plan(targets) if not backwards]


def migration_sql(using: str, migrations: list) -> list[str]:
    """Each migration's statements (as `sqlmigrate` gives them), each followed by the row that
    records it as applied."""
    connection = connections[using]
    loader = MigrationExecutor(connection).loader
    table = MigrationRecorder.Migration._meta.db_table
    statements = []
    for migration in migrations:
        statements.append(f"-- {migration.app_label}.{migration.name}")
        # Both exist (`sqlmigrate` uses them); django-stubs lacks collect_sql, and only PostgreSQL's ops compose.
        statements += loader.collect_sql([(migration, False)])  # type: ignore[attr-defined]
        statements.append(connection.ops.compose_sql(  # type: ignore[attr-defined]
            f"INSERT INTO {table} (app, name, applied) VALUES (%s, %s, now());", [migration.app_label, migration.name]))
    return statements


def table_grants(using: str, role: str) -> list[str]:
    """GRANTs on the tables of pgnotify's apps, for a role that will not own them."""
    tables = [model._meta.db_table for config in _pgnotify_apps() for model in config.get_models()
              if model._meta.managed and not model._meta.proxy]
    return [f"GRANT {DML} ON {connections[using].ops.quote_name(table)} TO {role};" for table in tables] + \
        [f"GRANT USAGE ON SEQUENCE {EVENT_SEQUENCE} TO {role};"]


class _Recorder:
    """An execute wrapper that records the statements changing the database and skips them."""

    def __init__(self):
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if not _CHANGES.match(sql):
            return execute(sql, params, many, context)
        text = sql if params is None else context["connection"].ops.compose_sql(sql, params)
        self.statements.append(text.strip().rstrip(";") + ";")
        return None


def recorded(run, using: str) -> list[str]:
    """The statements changing the database that `run()` makes, recorded instead of run."""
    recorder = _Recorder()
    with connections[using].execute_wrapper(recorder):
        run()
    return recorder.statements


def _sync(using: str) -> None:
    """The post-migrate sync's trigger and publication statements, in migrate's order."""
    for sync in schema_syncs():
        sync(using)


def sync_statements(using: str, first: Sequence[str] = ()) -> list[str] | None:
    """The statements the trigger and publication sync would run, run for nothing but the
    catalogue's answers and rolled back. `first` (pending migrations' SQL) is run before, in the
    same rolled-back transaction; None when the role cannot run it."""
    connection = connections[using]
    with transaction.atomic(using=using):
        try:
            with transaction.atomic(using=using), connection.cursor() as cursor:
                for statement in first:
                    cursor.execute(statement)
        except DatabaseError:
            transaction.set_rollback(True, using=using)
            return None
        statements = recorded(lambda: _sync(using), using)
        transaction.set_rollback(True, using=using)
    return statements


def _comment(statement: str) -> bool:
    return all(line.lstrip().startswith("--") for line in statement.splitlines() if line.strip())


def script(using: str, role: str) -> list[str]:
    """The SQL for a DBA: pgnotify's pending migrations (and GRANTs to `role` on the tables they
    make), then the trigger and publication statements."""
    migrations = pending_migrations(using)
    lines = migration_sql(using, migrations)
    if migrations:
        lines += table_grants(using, role)
    sync = sync_statements(using, [line for line in lines if not _comment(line)])
    return lines + ([AGAIN] if sync is None else sync)
