from django.db import migrations

from pgnotify.migrations.sql import load_sql


class Migration(migrations.Migration):
    """The change trigger function for every shape of model (composite keys, partitions, proxies,
    tables outside the search path) that sends nothing for an UPDATE changing no visible column.
    The triggers are switched after migrate (pgnotify.schema.triggers), by their hash."""

    dependencies = [
        ('pgnotify', '0005_chat_moved_to_contrib'),
    ]

    operations = [
        migrations.RunSQL(sql=load_sql("notify_change_v4.sql"), reverse_sql=load_sql("notify_change_v4.reverse.sql")),
    ]
