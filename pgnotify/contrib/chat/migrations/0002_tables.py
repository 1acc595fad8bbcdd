from django.db import migrations
from django.db.migrations.operations.base import Operation


class CreateModelIfMissing(Operation):
    """The table of a model the state already has, made unless it exists; written as SQL like
    any schema change (`sqlmigrate`, `pgnotify_sql`). Going back, the table is dropped."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, name: str):
        self.name = name

    def state_forwards(self, app_label, state):
        pass

    def _table_exists(self, schema_editor, model) -> bool:
        return model._meta.db_table in schema_editor.connection.introspection.table_names()

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.name)
        if not self._table_exists(schema_editor, model):
            schema_editor.create_model(model)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.name)
        if self._table_exists(schema_editor, model):
            schema_editor.delete_model(model)

    def describe(self):
        return f"Create the table of {self.name} unless it exists"


class Migration(migrations.Migration):
    """The chat's tables, made by the chat: a database made by an older release has them (pgnotify
    made them in every install, and 0001 took them over), a new one gets them here, only where
    the chat is installed."""

    dependencies = [
        ("pgnotify_chat", "0001_initial"),
    ]

    operations = [
        CreateModelIfMissing("ChatMessage"),
        CreateModelIfMissing("ChatPresence"),
    ]
