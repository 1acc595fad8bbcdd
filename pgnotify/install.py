"""What `migrate` does after pgnotify's migrations (post_migrate): the change triggers and the WAL
source's publication made to match the settings, in the order that never leaves a watched table
without a source of events.

- With the WAL source the publication comes first, and the change triggers go only once it
  exists: a publication that cannot be made fails `migrate` in one line, and the triggers stay.
- With the NOTIFY source the triggers come first, then the publication goes.
- A database no listener serves (pgnotify.conf.SERVED_DATABASES) gets neither: its events would
  pile up unread. `migrate` says so in one line.
"""

from django.core.management.base import CommandError
from django.db import connections

from . import conf
from .exceptions import WalSetupError
from .publication import sync_publication
from .triggers import sync_triggers


def sync_after_migrate(sender, using="default", verbosity=1, **kwargs):
    """post_migrate: a WATCH entry that cannot be served is reported, never a reason to fail; a
    publication that cannot be made is."""
    if connections[using].vendor != "postgresql":
        return
    if using not in conf.SERVED_DATABASES:
        if verbosity >= 1:
            served = ", ".join(map(repr, conf.SERVED_DATABASES))
            print(f"  pgnotify: database {using!r} is not served by a listener (only {served}): no triggers or "
                  "publication there")
        return
    steps = [sync_publication, sync_triggers] if conf.source() == "wal" else [sync_triggers, sync_publication]
    for sync in steps:
        try:
            result = sync(using)
        except WalSetupError as error:
            raise CommandError(f"pgnotify: {error}") from error
        result.report(verbosity)
