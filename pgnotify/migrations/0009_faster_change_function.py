from django.db import migrations

from pgnotify.schema.functions import apply_functions


class Migration(migrations.Migration):
    """The change function's faster body (docs/benchmarks.md, writer cost), with the same events
    and arguments: CREATE OR REPLACE keeps its name, so the triggers keep calling it."""

    dependencies = [
        ("pgnotify", "0008_one_change_function"),
    ]

    operations = apply_functions()
