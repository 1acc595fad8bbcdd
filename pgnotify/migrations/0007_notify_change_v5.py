from django.db import migrations

from pgnotify.migrations.sql import load_sql


class Migration(migrations.Migration):
    """The change trigger function that never makes a valid write fail: a json value jsonb refuses
    (a lone surrogate, \\u0000) goes as its JSON text, named in the event's `as_text`.
    The triggers are switched after migrate (pgnotify.schema.triggers), by their hash."""

    dependencies = [
        ('pgnotify', '0006_notify_change_v4'),
    ]

    operations = [
        migrations.RunSQL(sql=load_sql("notify_change_v5.sql"), reverse_sql=load_sql("notify_change_v5.reverse.sql")),
    ]
