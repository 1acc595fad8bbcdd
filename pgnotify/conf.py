"""pgnotify's settings, read from settings.PGNOTIFY on every access (override_settings works)."""

from django.conf import settings

DEFAULTS = {
    "WATCH": {},
    "CACHE_INVALIDATE": {},
    # Channels the listener subscribes to besides the watched ones.
    "LISTEN": [],
    # Seconds an event stays in the log for replay.
    "RETENTION": 24 * 3600,
    "HANDLERS": [],
    # Alias in CACHES of the cache pgnotify.cache uses (shared by every process).
    "CACHE": "default",
}

# Always listened to: state notices, chat, cache invalidation.
BUILTIN_CHANNELS = ["system", "chat", "cache_invalidate"]

# The chat travels through the same durable path as any watched table.
INTERNAL_WATCH = {"pgnotify.ChatMessage": {"channel": "chat"}}


def get(name: str):
    return getattr(settings, "PGNOTIFY", {}).get(name, DEFAULTS[name])


def watch() -> dict:
    return {**get("WATCH"), **INTERNAL_WATCH}


def listen_channels(extra=()) -> list[str]:
    channels = [entry["channel"] for entry in watch().values()]
    channels += BUILTIN_CHANNELS + list(get("LISTEN")) + list(extra)
    return list(dict.fromkeys(channels))
