"""Tag-based caching on Django's cache framework, invalidated by the listener.

    from pgnotify.cache import cached, cached_function

    products = cached("catalog:all", ["catalog"], lambda: list(Product.objects.all()))

    @cached_function(tags=["users"], timeout=60)
    def staff_count():
        return User.objects.filter(is_staff=True).count()

Every tag has a version (a key in the cache holding a random token). A cached value is stored
under a key made of its own key, the current global generation and the versions of its tags,
so invalidating a tag is one write (a new token) and no key is ever searched for; entries of
old versions are simply never read again and expire with their timeout.

The tags of a table come from PGNOTIFY["CACHE_INVALIDATE"]: its statement-level trigger
notifies `cache_invalidate` after every INSERT, UPDATE, DELETE or TRUNCATE, whoever writes
(Django, psql, another service), and the listener's handler (pgnotify.handlers.cache) bumps the tags.

Fail-safe. NOTIFY reaches only a listener that is connected, so an invalidation can be missed
while none is. Hence:
- the live listener keeps a heartbeat in the cache (a timestamp refreshed every second,
  expiring after HEARTBEAT_TTL seconds); while there is none, `cached` computes the value
  every time and stores nothing, so a stale value is never served;
- each time a listener goes live (a new LISTEN session) it first bumps the global generation,
  which invalidates every cached value at once: whatever was written while no session
  listened cannot have left a stale entry behind. Only then does it write the heartbeat.
The one window left is the heartbeat's lifetime after a listener dies without saying so
(SIGKILL, host lost): up to HEARTBEAT_TTL seconds.

The cache never breaks a read: while the backend fails (its table missing, Redis down),
`cached`, `acached` and `cached_function` compute and return the value, store nothing, and say
so in the log at most once a minute; `listener_live()` is then False.
"""

import functools
import hashlib
import inspect
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from . import conf
from .exceptions import one_line
from .listener.throttle import ThrottledLog

logger = logging.getLogger(__name__)
_backend_failed = ThrottledLog(logger, "cache backend failing (%d reads computed without the cache)")

HEARTBEAT_KEY = "pgnotify:listener:heartbeat"
GENERATION_KEY = "pgnotify:generation"
HEARTBEAT_TTL = 3  # seconds; the listener refreshes it every second
_PLAIN_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_MISSING = object()

__all__ = ["acached", "ainvalidate", "cached", "cached_function", "invalidate", "invalidate_all",
           "listener_live"]


def get_cache(using: str | None = None):
    return caches[using or conf.get("CACHE")]


def _token() -> str:
    return secrets.token_hex(8)


def tag_key(tag: str) -> str:
    if _PLAIN_TAG.fullmatch(tag):
        return f"pgnotify:tag:{tag}"
    return "pgnotify:tag:#" + hashlib.blake2b(tag.encode(), digest_size=16).hexdigest()


def _tag_list(tags) -> list[str]:
    tags = [tags] if isinstance(tags, str) else list(tags)
    if not all(isinstance(tag, str) and tag for tag in tags):
        raise TypeError(f"cache tags must be non-empty strings, not {tags!r}")
    return tags


# -- reading

def listener_live(using: str | None = None) -> bool:
    """True while a live listener keeps its heartbeat in the cache (cached values are used)."""
    try:
        return get_cache(using).get(HEARTBEAT_KEY) is not None
    except Exception as error:  # backends raise their own errors
        _backend_failed.add(1, one_line(error))
        return False


def _storage_key(cache, key: str, tags: list[str]) -> str | None:
    """The key the value is stored under now, or None while no listener is live (bypass)."""
    tag_keys = [tag_key(tag) for tag in tags]
    wanted = [HEARTBEAT_KEY, GENERATION_KEY, *tag_keys]
    found = cache.get_many(wanted)
    if found.get(HEARTBEAT_KEY) is None:
        return None
    missing = [k for k in wanted[1:] if k not in found]
    if missing:
        # Never set, or evicted: a fresh random version cannot match any entry stored before.
        for k in missing:
            cache.add(k, _token(), None)
        found.update(cache.get_many(missing))
        if any(k not in found for k in missing):
            return None  # the cache keeps no versions (full, or dummy): do not cache
    digest = hashlib.blake2b(digest_size=20)
    for part in (key, str(found[GENERATION_KEY]), *(f"{t}={found[k]}" for t, k in zip(tags, tag_keys, strict=True))):
        digest.update(part.encode())
        digest.update(b"\0")
    return "pgnotify:c:" + digest.hexdigest()


def _read(cache, key: str, tags: list[str]):
    """(storage key, value): (None, _MISSING) while no listener is live or the backend fails."""
    try:
        storage = _storage_key(cache, key, tags)
        return storage, (_MISSING if storage is None else cache.get(storage, _MISSING))
    except Exception as error:  # backends raise their own errors (DatabaseError, redis.ConnectionError, ...)
        _backend_failed.add(1, one_line(error))
        return None, _MISSING


def _store(cache, storage: str, value, timeout: float | None) -> None:
    try:
        cache.set(storage, value, DEFAULT_TIMEOUT if timeout is None else timeout)
    except Exception as error:
        _backend_failed.add(1, one_line(error))


def cached(key: str, tags: Iterable[str], compute: Callable[[], object], timeout: float | None = None, *,
           using: str | None = None):
    """The value cached under `key`, computed by `compute()` when missing or invalidated.

    `tags` name what the value depends on (e.g. "catalog"); any write to a table carrying one
    of them invalidates it. `timeout` in seconds; None uses the cache's default TIMEOUT."""
    tags = _tag_list(tags)
    cache = get_cache(using)
    storage, value = _read(cache, key, tags)
    if value is _MISSING:
        value = compute()
        if storage is not None:
            _store(cache, storage, value, timeout)
    return value


async def acached(key: str, tags: Iterable[str], compute: Callable[[], object],
                  timeout: float | None = None, *, using: str | None = None):  # noqa: ASYNC109 (a cache timeout)
    """`cached` for async code; `compute` may return an awaitable."""
    tags = _tag_list(tags)
    cache = get_cache(using)
    storage, value = await sync_to_async(_read)(cache, key, tags)
    if value is _MISSING:
        value = compute()
        if inspect.isawaitable(value):
            value = await value
        if storage is not None:
            await sync_to_async(_store)(cache, storage, value, timeout)
    return value


def cached_function(tags: Iterable[str], timeout: float | None = None, *, key: str | None = None,
                    using: str | None = None):
    """Decorator: cache a function's result per arguments (their repr must identify them)."""
    tags = _tag_list(tags)

    def decorate(function):
        prefix = key or f"{function.__module__}.{function.__qualname__}"

        def call_key(args, kwargs) -> str:
            return f"{prefix}:{args!r}:{sorted(kwargs.items())!r}"

        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def async_wrapper(*args, **kwargs):
                return await acached(call_key(args, kwargs), tags, lambda: function(*args, **kwargs), timeout,
                                     using=using)

            return async_wrapper

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return cached(call_key(args, kwargs), tags, lambda: function(*args, **kwargs), timeout, using=using)

        return wrapper

    return decorate


# -- invalidating

def invalidate(tags: Iterable[str], using: str | None = None) -> None:
    """Invalidate every value cached with any of `tags` (one write, no key scan)."""
    tags = _tag_list(tags)
    if tags:
        get_cache(using).set_many({tag_key(tag): _token() for tag in tags}, None)


async def ainvalidate(tags: Iterable[str], using: str | None = None) -> None:
    await sync_to_async(invalidate)(tags, using)


def invalidate_all(using: str | None = None) -> None:
    """Invalidate every cached value: a new global generation."""
    get_cache(using).set(GENERATION_KEY, _token(), None)


def write_heartbeat(using: str | None = None) -> None:
    get_cache(using).set(HEARTBEAT_KEY, time.time(), HEARTBEAT_TTL)


def stop_heartbeat(using: str | None = None) -> None:
    get_cache(using).delete(HEARTBEAT_KEY)


def create_cache_table_after_migrate(sender, using="default", verbosity=1, apps=None, **kwargs):
    """After `migrate`: when pgnotify's cache is a DatabaseCache on this database, its table exists
    (Django leaves that to `createcachetable`, which a new user does not know to run). Not while
    pgnotify itself is migrated back to zero."""
    from django.core.cache.backends.db import BaseDatabaseCache
    from django.core.management import call_command
    from django.db import connections

    try:
        cache = get_cache()
    except Exception:  # an unknown alias: `manage.py check` reports it (pgnotify.E011)
        return
    if not isinstance(cache, BaseDatabaseCache) or (apps is not None and not apps.all_models.get("pgnotify")):
        return
    table: str = cache._table  # type: ignore[attr-defined]  # set by its __init__; django-stubs omits it
    connection = connections[using]
    with connection.cursor() as cursor:
        if table in connection.introspection.table_names(cursor):
            return
    call_command("createcachetable", table, database=using, verbosity=0)  # asks the database router
    if verbosity >= 1:
        print(f"  pgnotify: created cache table {table}")
