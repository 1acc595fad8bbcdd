"""The handlers the listener runs besides its output: the built-in ones, then PGNOTIFY['HANDLERS']."""

from . import conf
from .handlers import load_handler

# Dotted paths of handler classes every listener runs (see handlers.load_handler for entries).
BUILTIN_HANDLERS: list[str] = ["pgnotify.groups.GroupForwarder", "pgnotify.cache.CacheInvalidator"]


def configured_handlers() -> list:
    return [load_handler(entry) for entry in [*BUILTIN_HANDLERS, *conf.get("HANDLERS")]]
