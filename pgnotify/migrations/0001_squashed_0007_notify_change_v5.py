import django.db.models.functions.datetime
from django.db import migrations, models

import pgnotify.models
from pgnotify.schema.functions import DROP, functions_sql


class Migration(migrations.Migration):
    """What a new install needs: the event log, the listeners' positions and the functions as
    they are now. A database with all of 0001-0007 applied takes this as applied; one with some
    of them finishes them first (they stay beside this one for that).

    Going back, it also drops the chat's tables an older release made in every install
    (pgnotify.contrib.chat owns them now, and drops them itself when it is installed)."""

    initial = True

    replaces = [
        ("pgnotify", "0001_initial"),
        ("pgnotify", "0002_chatpresence"),
        ("pgnotify", "0003_notify_change_v2"),
        ("pgnotify", "0004_notify_change_v3"),
        ("pgnotify", "0005_chat_moved_to_contrib"),
        ("pgnotify", "0006_notify_change_v4"),
        ("pgnotify", "0007_notify_change_v5"),
    ]

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("channel", models.TextField()),
                ("txid", pgnotify.models.Xid8Field(db_default=models.Func(function="pg_current_xact_id"),
                                                   db_index=True)),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("payload", models.JSONField()),
            ],
            options={
                "db_table": "pgnotify_event",
            },
        ),
        migrations.CreateModel(
            name="ListenerPosition",
            fields=[
                ("name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("snapshot", models.TextField()),
                ("updated_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
            ],
            options={
                "db_table": "pgnotify_listener",
            },
        ),
        migrations.RunSQL(
            sql=functions_sql(),
            reverse_sql=DROP + "DROP TABLE IF EXISTS pgnotify_chatpresence, pgnotify_chatmessage;",
        ),
    ]
