"""The SQL functions pgnotify installs, as they are now (one file each in sql/), and the migration
operations that put them in place.

A change of a function's body is an edit of its file and a new migration whose operations are
`apply_functions()`. CREATE OR REPLACE keeps each function's name, so the triggers keep calling
it; in the same transaction the change triggers already in place are rewritten where their
definition changed (pgnotify.schema.triggers), so no writer meets a trigger passing arguments the
new body does not read. A function whose signature changes also needs its old one dropped in that
migration.
"""

from django.db import migrations
from django.db.migrations.operations.base import Operation

from .rights import recorded
from .sql import DROP, functions_sql
from .triggers import refresh_change_triggers

__all__ = ["DROP", "RefreshChangeTriggers", "apply_functions", "functions_sql"]


class RefreshChangeTriggers(Operation):
    """Rewrites the change triggers in place to call the functions as they are now, in the
    migration's transaction; written as SQL like any schema change (`sqlmigrate`, `pgnotify_sql`)."""

    reduces_to_sql = True
    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        using = schema_editor.connection.alias
        if schema_editor.collect_sql:
            schema_editor.collected_sql += recorded(lambda: refresh_change_triggers(using), using)
        else:
            refresh_change_triggers(using).report(verbosity=0)  # what could not be moved, if anything

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass  # the triggers keep calling the function: it stays, under its name

    def describe(self):
        return "Move the change triggers to the change function as it is now"


def apply_functions() -> list:
    """The operations of a migration that puts the functions as they are now in place."""
    return [migrations.RunSQL(functions_sql(), reverse_sql=migrations.RunSQL.noop), RefreshChangeTriggers()]
