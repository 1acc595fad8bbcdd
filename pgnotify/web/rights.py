"""Rights checked again while a websocket stays open, not only at its handshake.

A socket's user may lose the right to it while it is open: logged out (session deleted), made
inactive, no longer staff, password changed (the session's hash no longer matches). Every
websocket consumer that needs a right registers here; one task per process (per event loop)
checks all of them every CHECK_INTERVAL seconds, CHUNK sockets at a time spread over the interval,
with one query for the sessions and one for their users per CHUNK, and closes those whose user
lost the right with code 4403. Decoded sessions, password hashes and user rows that did not
change are kept between rounds (their inputs are compared), so a round costs mostly its queries.
A consumer whose view depends on its user (live streams) defines `refresh_rights(users)`, an
async static method called once per chunk with {consumer: fresh user} of those still allowed.

A round allocates as few lasting containers as it can (dicts, not thousands of pairs): objects
alive across its awaits are promoted to the collector's oldest generation, and every 25% growth of
that generation costs a full collection, a stall of the event loop of about a second at 10,000
sockets.
"""

import asyncio
import logging
import weakref
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import DatabaseError, connection
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from ..exceptions import one_line

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0  # seconds: a lost right closes the socket within this plus one round of queries
# Distinct sessions checked per pair of queries. A chunk runs in a worker thread and holds the GIL
# for its Python work (about 3 ms at 250): the event loop waits at most that long to send a frame
# (at 1,000 a chunk took 13 ms, and the loop, taking the GIL back after each send, crawled).
CHUNK = 250
FORBIDDEN = 4403

# event loop -> {consumer: needs staff}
_watched: dict[asyncio.AbstractEventLoop, dict[AsyncWebsocketConsumer, bool]] = {}
_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
# consumer -> (session key, user id), read from its scope once: a scope does not change, and reading
# them through its lazy session and user was a fifth of a round's CPU at 5,000 sockets.
_identities: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watch(consumer, staff: bool = False) -> None:
    """From now on `consumer` is closed (4403) once its user loses the right to it."""
    loop = asyncio.get_running_loop()
    for closed in [other for other in _watched if other.is_closed()]:
        _watched.pop(closed, None)
        _tasks.pop(closed, None)
    _watched.setdefault(loop, {})[consumer] = staff
    if loop not in _tasks or _tasks[loop].done():
        _tasks[loop] = loop.create_task(_check_forever(_watched[loop]))


def unwatch(consumer) -> None:
    for consumers in _watched.values():
        consumers.pop(consumer, None)


def watched() -> int:
    """How many sockets of this event loop are watched (tests, metrics)."""
    return len(_watched.get(asyncio.get_running_loop(), {}))


async def _check_forever(consumers: dict[AsyncWebsocketConsumer, bool]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await check_round(consumers, over=CHECK_INTERVAL)
        await asyncio.sleep(max(0.0, started + CHECK_INTERVAL - loop.time()))  # a round cut short too


async def check_round(consumers: dict[AsyncWebsocketConsumer, bool], over: float = 0.0) -> None:
    """One round: close the sockets whose user lost the right, refresh the others' users. The
    sockets go CHUNK at a time, one pair of queries each, spaced evenly over `over` seconds: a
    round at 5,000 sockets in one go held the event loop for tens of milliseconds every 2 s."""
    listed = list(consumers)  # one list: not a pair per socket kept alive for the round
    slices = max(1, -(-len(listed) // CHUNK))
    for start in range(0, slices * CHUNK, CHUNK):
        if over:
            await asyncio.sleep(over / slices)
        if not await _check_slice(consumers, listed[start:start + CHUNK]):
            return


async def _check_slice(consumers: dict[AsyncWebsocketConsumer, bool], part: list) -> bool:
    """Checks these consumers (those still watched); False if the database could not be asked."""
    sockets = {consumer: (*_identity(consumer), consumers[consumer]) for consumer in part if consumer in consumers}
    if not sockets:
        return True
    try:
        allowed = await database_sync_to_async(allowed_users)(set(sockets.values()))
    except Exception as error:  # the database is away: the rights stay as they were until it is back
        logger.warning("websocket rights not checked: %s", one_line(error))
        return False
    for consumer, key in sockets.items():
        if key not in allowed and consumers.pop(consumer, None) is not None:
            logger.info("websocket of user %s closed: the right to it was lost", key[1])
            try:
                await consumer.close(code=FORBIDDEN)
            except Exception as error:  # already closing
                logger.debug("websocket already closed: %s", one_line(error))
    await _refresh({consumer: allowed[key] for consumer, key in sockets.items() if key in allowed})
    return True


async def _refresh(users: dict) -> None:
    """Each kind of consumer that defines `refresh_rights` gets its sockets' fresh users, in one call."""
    hooks: dict = {}
    for consumer, user in users.items():
        hook = getattr(type(consumer), "refresh_rights", None)
        if hook is not None:
            hooks.setdefault(hook, {})[consumer] = user
    for hook, fresh in hooks.items():
        try:
            await hook(fresh)
        except Exception as error:  # the database is away: the next tick tries again
            logger.warning("rights not re-evaluated: %s", one_line(error))


def _identity(consumer) -> tuple:
    known = _identities.get(consumer)
    if known is None:
        known = _identities[consumer] = (_session_key(consumer), _user_id(consumer))
    return known


def _session_key(consumer) -> str | None:
    session = consumer.scope.get("session")
    return getattr(session, "session_key", None) if session is not None else None


def _user_id(consumer):
    user = consumer.scope.get("user")
    return getattr(user, "pk", None) if user is not None else None


def still_allowed(sockets: set[tuple]) -> set[tuple]:
    """The (session key, user id, needs staff) triples whose session still logs that user in (same
    password), and whose user is still active (and staff, where needed)."""
    return set(allowed_users(sockets))


def allowed_users(sockets: set[tuple]) -> dict[tuple, object]:
    """As still_allowed, each triple with its user as the database has it now."""
    users = _users({user_id for _, user_id, _ in sockets if user_id is not None})
    sessions = _sessions({key for key, _, _ in sockets if key})
    allowed = {}
    for key, user_id, staff in sockets:
        user, data = users.get(user_id), sessions.get(key)
        if user is None or data is None or str(data.get(SESSION_KEY)) != str(user.pk):
            continue
        if not getattr(user, "is_active", True) or (staff and not user.is_staff):
            continue
        if not _same_password(user, data.get(HASH_SESSION_KEY)):
            continue
        allowed[(key, user_id, staff)] = user
    return allowed


def _sessions(keys: set[str]) -> dict[str, dict]:
    """Session data by key, for the keys that still exist: one query on the database backends."""
    from django.contrib.sessions.backends.db import SessionStore as DatabaseStore

    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store_class, DatabaseStore):
        store = store_class()
        rows = _any(store_class.get_model_class()._default_manager.filter(expire_date__gt=timezone.now()),
                    "session_key", keys).values_list("session_key", "session_data")
        return {key: _decoded(store, key, data) for key, data in rows}
    found = {}
    for key in keys:  # cache, file or signed-cookie sessions: no query to batch
        data = store_class(key).load()
        if data:
            found[key] = data
    return found


def _any(queryset, field: str, values: set):
    """`queryset.filter(field__in=values)` as `= ANY(array)`: one parameter, not one per value
    (Django prepares each value of an `in` list: most of a round's CPU at 10,000 sockets)."""
    model = queryset.model
    column = model._meta.get_field(field).column if field != "pk" else model._meta.pk.column
    qn = connection.ops.quote_name
    return queryset.extra(where=[f"{qn(model._meta.db_table)}.{qn(column)} = ANY(%s)"], params=[list(values)])


# Rounds see the same sessions again and again: decoding (a signature check and JSON) and the
# password's session hash (an HMAC) are kept while their inputs stay the same.
_decodes: dict[str, tuple[str, dict]] = {}  # session key -> (its data as stored, decoded)
_hashes: dict[tuple, str] = {}  # (user pk, password hash) -> session auth hash
CACHE_MAX = 200_000  # entries; past it a cache starts afresh


_rows: dict[object, tuple[object, object]] = {}  # user pk -> (its row version as last read, its instance)
_versioned: dict[type, bool] = {}  # user model -> whether its table has row versions (xmin) to compare


def _users(ids: set) -> dict:
    """The users with these pks as the database has them now. A user whose row did not change is
    the instance of the last round (its cached relations dropped): not 10,000 new objects a round,
    which would survive into the oldest GC generation and trigger full collections (stalls).
    PostgreSQL gives every row version its own `xmin`: a round reads the pks and versions, and the
    whole rows of the users whose version changed only (most of a round's CPU was reading users)."""
    model = get_user_model()
    found, stale = {}, set(ids)
    if _versioned.get(model, True):
        try:
            stale = set()
            for pk, version in _any(model._default_manager.all(), "pk", ids).values_list("pk", _version(model)):
                cached = _rows.get(pk)
                if cached is not None and cached[0] == version:
                    found[pk] = _fresh(cached[1])
                else:
                    stale.add(pk)
        except DatabaseError as error:  # e.g. a user model backed by a view: whole rows each round
            logger.info("user rows read whole each rights round (%s)", one_line(error))
            _versioned[model] = False
            found, stale = {}, set(ids)
    if stale:
        found.update(_read_users(model, stale))
    return found


def _read_users(model, ids: set) -> dict:
    names = [field.attname for field in model._meta.concrete_fields]
    versioned = _versioned.get(model, True)
    columns = [*names, _version(model)] if versioned else names
    pk_index = names.index(model._meta.pk.attname)
    found = {}
    for row in _any(model._default_manager.all(), "pk", ids).values_list(*columns):
        version, values = (row[-1] if versioned else row), row[:len(names)]
        pk = values[pk_index]
        cached = _rows.get(pk)
        if cached is not None and cached[0] == version:  # without versions: the same values
            found[pk] = _fresh(cached[1])
            continue
        if len(_rows) >= CACHE_MAX:
            _rows.clear()
        user = model.from_db(model._default_manager.db, names, values)
        _rows[pk] = (version, user)
        found[pk] = user
    return found


def _version(model) -> RawSQL:
    return RawSQL(f"{connection.ops.quote_name(model._meta.db_table)}.xmin::text", [])


def _fresh(user):
    """A kept instance, its cached relations dropped (they may have changed): emptied in place, not
    a new dict per user and round (the instances last: so would each round's dicts)."""
    cache = user._state.__dict__.get("fields_cache")
    if cache:
        cache.clear()
    user.__dict__.pop("_prefetched_objects_cache", None)
    return user


def _decoded(store, key: str, data: str) -> dict:
    cached = _decodes.get(key)
    if cached is not None and cached[0] == data:
        return cached[1]
    if len(_decodes) >= CACHE_MAX:
        _decodes.clear()
    decoded = _decodes[key] = (data, store.decode(data))
    return decoded[1]


def _auth_hash(user) -> str:
    key = (user.pk, getattr(user, "password", None))
    found = _hashes.get(key)
    if found is None:
        if len(_hashes) >= CACHE_MAX:
            _hashes.clear()
        found = _hashes[key] = user.get_session_auth_hash()
    return found


def _same_password(user, session_hash) -> bool:
    """As django.contrib.auth.get_user: a password change ends the sessions made before it."""
    if not hasattr(user, "get_session_auth_hash"):
        return True
    if session_hash and constant_time_compare(session_hash, _auth_hash(user)):
        return True
    fallbacks = getattr(user, "get_session_auth_fallback_hash", None)
    return bool(session_hash and fallbacks and any(
        constant_time_compare(session_hash, fallback) for fallback in fallbacks()))
