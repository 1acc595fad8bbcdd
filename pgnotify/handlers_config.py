"""The handlers the listener runs besides its output, from settings."""

from django.utils.module_loading import import_string

from . import conf


def configured_handlers() -> list:
    """Instances of the classes (or factories) named in PGNOTIFY['HANDLERS']."""
    return [import_string(path)() for path in conf.get("HANDLERS")]
