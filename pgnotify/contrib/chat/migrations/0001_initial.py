import django.db.models.deletion
import django.db.models.functions.datetime
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """The chat's tables were created by pgnotify's migrations 0001 and 0002, when the chat was
    part of pgnotify: this app takes them over as they are (state only, no schema change)."""

    initial = True

    dependencies = [
        ("pgnotify", "0002_chatpresence"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ChatMessage",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("room", models.CharField(max_length=50)),
                        ("username", models.CharField(max_length=150)),
                        ("message", models.TextField()),
                        ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                        ("user", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                   to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "db_table": "pgnotify_chatmessage",
                        "indexes": [models.Index(fields=["room", "-id"], name="pgnotify_chat_room_id")],
                    },
                ),
                migrations.CreateModel(
                    name="ChatPresence",
                    fields=[
                        ("channel_name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                        ("room", models.CharField(max_length=50)),
                        ("username", models.CharField(max_length=150)),
                        ("seen_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                    ],
                    options={
                        "db_table": "pgnotify_chatpresence",
                        "indexes": [models.Index(fields=["room", "seen_at"], name="pgnotify_presence_room")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
