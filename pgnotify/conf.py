"""pgnotify's settings, read from settings.PGNOTIFY on every access (override_settings works).

Installed apps may contribute watched models and handlers of their own (the chat does) through
attributes of their AppConfig: `pgnotify_watch` (like WATCH) and `pgnotify_handlers` (like
HANDLERS, run only when there is a channel layer).
"""

from datetime import timedelta
from typing import Literal, overload

from django.apps import apps
from django.conf import settings

from .listener.channels import CACHE_INVALIDATE, SYSTEM

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
    # Where change events come from: "notify" (triggers, event log, NOTIFY) or "wal" (logical
    # decoding through a replication slot per listener name; docs/sources.md).
    "SOURCE": "notify",
    # WAL source: warn when a listener's replication slot retains more WAL than this (bytes).
    "WAL_RETAINED_WARNING": 1 << 30,
    # Database alias -> the alias that reaches the same database directly, for every session-bound
    # part (LISTEN, the standby lock, the WAL slot): lets the alias go through a transaction pooler.
    "DIRECT": {},
    # Live data for the app's users: stream name -> declaration (docs/live.md).
    "STREAMS": {},
    # Processes serving websockets: freeze the survivors of each full collection, so the next one
    # walks only newer objects, and give them back to the collector every GC_THAW seconds
    # (pgnotify.web.collector).
    "GC_FREEZE": True,
    "GC_THAW": 3600,
}

SOURCES = ("notify", "wal")

# Always listened to: state notices, cache invalidation. An installed app adds its own channels
# through `pgnotify_watch` (the chat's `chat`).
BUILTIN_CHANNELS = [SYSTEM, CACHE_INVALIDATE]


def get(name: str):
    return getattr(settings, "PGNOTIFY", {}).get(name, DEFAULTS[name])


def retention() -> timedelta:
    """RETENTION as a timedelta (the setting is seconds, or a timedelta)."""
    value = get("RETENTION")
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


@overload
def contributed(kind: Literal["watch"]) -> dict: ...
@overload
def contributed(kind: Literal["handlers"]) -> list: ...
def contributed(kind: str) -> dict | list:
    """What installed apps contribute: kind "watch" (a dict) or "handlers" (a list)."""
    attribute = f"pgnotify_{kind}"
    if kind == "watch":
        merged: dict = {}
        for config in apps.get_app_configs():
            merged.update(getattr(config, attribute, None) or {})
        return merged
    return [entry for config in apps.get_app_configs() for entry in getattr(config, attribute, None) or []]


def source() -> str:
    return get("SOURCE")


def watch() -> dict:
    return {**get("WATCH"), **contributed("watch")}


def listen_channels(extra=()) -> list[str]:
    channels = [entry["channel"] for entry in watch().values()]
    channels += BUILTIN_CHANNELS + list(get("LISTEN")) + list(extra)
    return list(dict.fromkeys(channels))


def direct_alias(alias: str) -> str:
    """The alias the listener's sessions use for `alias`: its PGNOTIFY["DIRECT"] entry, else itself."""
    direct = get("DIRECT")
    return direct.get(alias, alias) if isinstance(direct, dict) else alias
