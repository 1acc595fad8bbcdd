from django.db import migrations


class Migration(migrations.Migration):
    """The chat's models now belong to the optional app pgnotify.contrib.chat, which takes over
    their tables as they are: pgnotify forgets them in its state only (no schema change)."""

    dependencies = [
        ('pgnotify', '0004_notify_change_v3'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='ChatPresence'),
                migrations.DeleteModel(name='ChatMessage'),
            ],
            database_operations=[],
        ),
    ]
