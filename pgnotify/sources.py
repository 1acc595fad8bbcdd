"""The event source PGNOTIFY["SOURCE"] names, made into a listener: the NOTIFY one (triggers,
event log) or the WAL one (logical decoding), with what each needs from the settings."""

from . import conf
from .listener import Listener, ListenerOptions, Sink
from .listener.base import BaseListener
from .listener.wal import WalListener, WalTable, WalTarget
from .schema.watched import watched_tables


def wal_tables(database: str = "default") -> list[WalTable]:
    """The watched and cache-invalidated tables of `database` (pgnotify.schema.watched: a target per
    WATCH entry, a model and its proxies on one table), as the WAL source renders them. Entries
    that cannot be used are left out (the system checks and `migrate` say why)."""
    tables, _ = watched_tables(database)
    return [WalTable(name.name, name.schema, table.key,
                     tuple(WalTarget(t.channel, t.label, frozenset(t.excluded)) for t in table.targets),
                     tuple(table.tags))
            for name, table in tables.items()]


def stream_models() -> frozenset[str]:
    """The models of PGNOTIFY["STREAMS"]: the WAL source writes their events to the event log, from
    which a live subscription resumes (the NOTIFY source's triggers write every event there)."""
    from django.apps import apps

    from .web.live.streams import declared

    models = set()
    for declaration in declared().values():
        try:
            models.add(apps.get_model(declaration["model"])._meta.label_lower)
        except (LookupError, ValueError, TypeError, KeyError):
            pass  # a declaration its check refuses: no stream serves it
    return frozenset(models)


def make_listener(conninfo: dict, options: ListenerOptions, sink: Sink) -> BaseListener:
    if conf.source() == "wal":
        return WalListener(conninfo, options, sink, wal_tables(options.database),
                           retained_warning=conf.get("WAL_RETAINED_WARNING"), logged_models=stream_models())
    return Listener(conninfo, options, sink)
