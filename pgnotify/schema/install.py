"""What `migrate` does after pgnotify's migrations (post_migrate): the change triggers, the WAL
source's publication and its slots made to match the settings, in the order that never leaves a
watched table without a source of events, so a switch of source loses nothing (pgnotify.schema.switch).

- With the WAL source the publication comes first, then a slot for every known listener name,
  and the change triggers go only then: a publication that cannot be made fails `migrate` in one
  line, and the triggers stay.
- With the NOTIFY source the triggers come first; then every slot must have handed on what it
  holds, the publication goes and the slots are retired.
- `migrate pgnotify zero` leaves nothing: with pgnotify's functions gone, the publication and
  pgnotify's slots go too.
- Each database gets what the watched models DATABASE_ROUTERS write there need (`migrate
  --database ALIAS`; its listener is `listen_notify --database ALIAS`). An alias that is only
  the direct alias of another (PGNOTIFY["DIRECT"]) is that database: it is set up through the
  other, never as a database of its own (where no model is routed, the sync would drop all).
"""

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

from .. import conf
from ..exceptions import WalSetupError
from . import switch
from .publication import sync_publication
from .triggers import installed, sync_triggers


def sync_after_migrate(sender, using="default", verbosity=1, **kwargs):
    """post_migrate: a WATCH entry that cannot be served is reported, never a reason to fail; a
    publication that cannot be made is."""
    if connections[using].vendor != "postgresql":
        return
    reached = [alias for alias in settings.DATABASES if alias != using and conf.direct_alias(alias) == using]
    if reached:
        if verbosity >= 1:
            print(f"  pgnotify: database {using!r} is the direct alias of {reached[0]!r}: `migrate --database "
                  f"{reached[0]}` sets up pgnotify there")
        return
    try:
        if kwargs.get("plan") is None:
            # `flush` (it sends post_migrate without a plan): the tables are emptied, not changed,
            # and no source is switched; the triggers and publication are only kept as they are.
            for sync in schema_syncs():
                sync(using).report(verbosity)
            return
        _sync(using, verbosity)
    except WalSetupError as error:
        raise CommandError(f"pgnotify: {error}") from error


def schema_syncs() -> list:
    """The trigger and publication syncs in the order that never leaves a watched table without a
    source of events: the new source's part first."""
    return [sync_publication, sync_triggers] if conf.source() == "wal" else [sync_triggers, sync_publication]


def _sync(using: str, verbosity: int) -> None:
    with connections[using].cursor() as cursor:
        present = installed(cursor)
    if not present:
        sync_publication(using).report(verbosity)
        switch.drop_slots(using).report(verbosity)
    elif conf.source() == "wal":
        fresh = not switch.publication_exists(using)
        sync_publication(using).report(verbosity)
        switch.prepare_slots(using, fresh).report(verbosity)
        sync_triggers(using).report(verbosity)
    else:
        sync_triggers(using).report(verbosity)
        positions = switch.hand_over_slots(using)
        sync_publication(using).report(verbosity)
        switch.retire_slots(using, positions).report(verbosity)
