from django.db import migrations

from pgnotify.migrations.sql import load_sql


class Migration(migrations.Migration):
    """The change trigger function, cheaper per call (same events and notifications as v2): one
    statement logs and notifies, and no SET clauses. The triggers are switched after migrate
    (pgnotify.schema.triggers), by their hash."""

    dependencies = [
        ('pgnotify', '0003_notify_change_v2'),
    ]

    operations = [
        migrations.RunSQL(sql=load_sql("notify_change_v3.sql"), reverse_sql=load_sql("notify_change_v3.reverse.sql")),
    ]
