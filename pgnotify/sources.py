"""The event source PGNOTIFY["SOURCE"] names, made into a listener: the NOTIFY one (triggers,
event log) or the WAL one (logical decoding), with what each needs from the settings."""

from django.apps import apps

from . import conf
from .listener import Listener, ListenerOptions, Sink
from .listener.base import BaseListener
from .listener.wal import WalListener, WalTable


def wal_tables() -> list[WalTable]:
    """The watched and cache-invalidated tables, as the WAL source renders them."""
    tags = {apps.get_model(label)._meta.db_table: tuple(names) for label, names in conf.get("CACHE_INVALIDATE").items()}
    tables = []
    for label, options in conf.watch().items():
        model = apps.get_model(label)
        table = model._meta.db_table
        excluded = frozenset(model._meta.get_field(name).column for name in options.get("exclude", []))
        tables.append(WalTable(table, options["channel"], model._meta.label_lower, (model._meta.pk.column,),
                               excluded, tags.pop(table, ())))
    tables += [WalTable(table, tags=names) for table, names in tags.items()]
    return tables


def make_listener(conninfo: dict, options: ListenerOptions, sink: Sink) -> BaseListener:
    if conf.source() == "wal":
        return WalListener(conninfo, options, sink, wal_tables(), retained_warning=conf.get("WAL_RETAINED_WARNING"))
    return Listener(conninfo, options, sink)
