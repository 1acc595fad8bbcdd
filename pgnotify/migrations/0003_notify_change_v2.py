from django.db import migrations

from pgnotify.migrations.sql import load_sql


class Migration(migrations.Migration):
    """Statement-level change triggers (transition tables): a bulk statement logs its events with
    one INSERT ... SELECT and sends a few chunk notifications. The triggers themselves are
    switched after migrate (pgnotify.schema.triggers), by their hash."""

    dependencies = [
        ('pgnotify', '0002_chatpresence'),
    ]

    operations = [
        migrations.RunSQL(sql=load_sql("notify_change_v2.sql"), reverse_sql=load_sql("notify_change_v2.reverse.sql")),
    ]
