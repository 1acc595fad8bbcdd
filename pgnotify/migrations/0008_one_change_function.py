from django.db import migrations

from pgnotify.schema.functions import apply_functions

# The change functions of migrations 0001-0007, superseded by pgnotify_log_changes.
SUPERSEDED = """
    DROP FUNCTION IF EXISTS pgnotify_notify_change();
    DROP FUNCTION IF EXISTS pgnotify_notify_change_v2();
    DROP FUNCTION IF EXISTS pgnotify_notify_change_v3();
    DROP FUNCTION IF EXISTS pgnotify_notify_change_v4();
    DROP FUNCTION IF EXISTS pgnotify_notify_change_v5();
    DROP FUNCTION IF EXISTS pgnotify_jsonb_row_v5(anyelement, regclass);
"""


class Migration(migrations.Migration):
    """One change function, under a name that lasts: on a database made by an older release, the
    function as it is now, the change triggers moved to it in the same transaction (no write
    meets a moment without one), then the superseded functions dropped. Without CASCADE: a
    trigger that could not be moved fails this migration, and nothing changes."""

    dependencies = [
        ("pgnotify", "0001_squashed_0007_notify_change_v5"),
    ]

    operations = [
        *apply_functions(),
        migrations.RunSQL(sql=SUPERSEDED, reverse_sql=migrations.RunSQL.noop),
    ]
