"""The demo project on upstream channels_postgres, as it installs from PyPI (the peer measured
when change events travel through a channel layer alone, without pgnotify's triggers)."""

from notifyproject.settings import *  # noqa: F403
from notifyproject.settings import DATABASES

_database = {**DATABASES["default"], "OPTIONS": {}}  # upstream passes OPTIONS on to libpq
DATABASES["channels_postgres"] = _database  # upstream deletes group members through this alias
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_postgres.core.PostgresChannelLayer", "CONFIG": _database}}
