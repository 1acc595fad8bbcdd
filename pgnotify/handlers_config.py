"""The handlers the listener runs besides its output: the built-in ones, then PGNOTIFY['HANDLERS']."""

from django.utils.module_loading import import_string

from . import conf

# Dotted paths of classes (or zero-argument factories) every listener runs.
BUILTIN_HANDLERS: list[str] = ["pgnotify.groups.GroupForwarder"]


def configured_handlers() -> list:
    return [import_string(path)() for path in [*BUILTIN_HANDLERS, *conf.get("HANDLERS")]]
