from django.db import migrations

from pgnotify.schema.functions import apply_functions


class Migration(migrations.Migration):
    """Each watched table's own change function (pgnotify/schema/table_function.py): the shared
    body, with a path of the table's own for a statement of one inserted or deleted row. The
    change triggers move to their table's function."""

    dependencies = [
        ("pgnotify", "0009_faster_change_function"),
    ]

    operations = apply_functions()
