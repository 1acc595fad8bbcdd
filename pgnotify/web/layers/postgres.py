"""pgnotify's PostgreSQL channel layer: channels_postgres's, made to survive a lost connection.

Reaches into channels_postgres internals (verified against channels-postgres 1.1.4; the upper
bound in pyproject.toml keeps untested versions out): its listener task and advisory-lock
bookkeeping (`_get_or_create_listener_task`, `listener_task_is_running`, `_channel_advisory_locks`,
`_get_or_create_channel_advisory_lock`, `_get_or_create_queue`) and its DatabaseLayer.
`INTERNALS_USED` names them; a test fails when one is missing.

Upstream's LISTEN task ends for good when its connection dies (a terminated backend, a database
restart): the consumers of that process then never receive another message. This layer runs the
LISTEN loop under a supervisor that reconnects with capped exponential backoff and jitter and,
once listening again, re-reads from the message table every unexpired message of its own
channels, so messages sent while it was away arrive too. Messages are de-duplicated by id.

Group memberships expire (`group_expiry`, seconds; upstream keeps them forever by default): each
process renews the memberships it added every quarter of that time, a group message goes only to
unexpired members, and expired ones are deleted. So the memberships of a process that died
without a goodbye (SIGKILL, a lost host) stop receiving copies of every group message within
`group_expiry` seconds. `group_expiry=0` keeps upstream's behaviour (never expire); do not mix
this layer with upstream's on one database with expiry on, as upstream's rows look expired.

It also takes its connection settings from Django's default database when none are given
(so tests use the test database), keeps one connection pool per event loop, checks pooled
connections before use, and sends a group message with one query for the group's members.
Its LISTEN session then reaches the database as the listener's do: through the direct alias of
PGNOTIFY["DIRECT"] (the pool may go through a transaction pooler; a LISTEN there hears nothing).
"""

import asyncio
import base64
import logging
import time

import psycopg
import psycopg_pool
from psycopg import sql

from ...exceptions import one_line
from ...extras import require
from ...listener.backoff import backoff_delay

require("channels_postgres", "postgres-layer", "pgnotify's PostgreSQL channel layer")

from channels_postgres import core  # noqa: E402
from channels_postgres.db import GROUP_CHANNEL_TABLE, MESSAGE_TABLE, DatabaseLayer  # noqa: E402

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "channels_postgres_messages"
APPLICATION_NAME = "pgnotify channel layer"
CLEANUP_INTERVAL = 60.0  # seconds between deletions of expired messages
GROUP_EXPIRY = 120  # default seconds a membership lives unless its process renews it
HEARTBEAT = 5.0  # seconds without a notification before the LISTEN connection is probed
BACKOFF_INITIAL, BACKOFF_MAX = 0.2, 5.0
VERIFIED_WITH = "channels-postgres 1.1.4"
INTERNALS_USED = {
    core.PostgresChannelLayer: ["_get_or_create_listener_task", "_get_or_create_queue", "_group_key",
                                "_get_or_create_channel_advisory_lock",
                                "require_valid_group_name", "require_valid_channel_name", "serialize"],
    DatabaseLayer: ["get_db_pool"],
}
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 4, "keepalives_interval": 2, "keepalives_count": 2,
              "connect_timeout": 5}


class PooledDatabaseLayer(DatabaseLayer):
    """Upstream's queries on one pool per event loop (a pool cannot outlive its loop)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pools: dict[asyncio.AbstractEventLoop, asyncio.Future] = {}

    async def get_db_pool(self, db_params=None) -> psycopg_pool.AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        for closed in [other for other in self._pools if other.is_closed()]:
            del self._pools[closed]
        if loop not in self._pools:
            # Opened in a task of its own and shielded: a caller cancelled mid-way (a consumer
            # that closes at once) must not leave a half-opened pool that nobody closes.
            self._pools[loop] = loop.create_task(self._open_pool())
        return await asyncio.shield(self._pools[loop])

    async def _open_pool(self) -> psycopg_pool.AsyncConnectionPool:
        params = {**self.db_params, "application_name": APPLICATION_NAME}
        pool = psycopg_pool.AsyncConnectionPool(
            conninfo=psycopg.conninfo.make_conninfo("", **params),
            open=False, configure=_autocommit,
            check=psycopg_pool.AsyncConnectionPool.check_connection,  # a terminated backend is replaced
            **{"min_size": 1, "max_size": 4, "name": "pgnotify-channel-layer", **self.psycopg_options},
        )
        await pool.open(wait=True)
        return pool

    async def delete_channel_group(self, group_key: str, channel: str) -> None:
        # Upstream goes through a Django database alias named 'channels_postgres'; the pool needs none.
        query = sql.SQL("DELETE FROM {} WHERE group_key = %s AND channel = %s").format(
            sql.Identifier(GROUP_CHANNEL_TABLE))
        async with (await self.get_db_pool()).connection() as conn:
            await conn.execute(query, (group_key, channel))

    async def unexpired_messages(self, channels: list[str]) -> list[tuple[str, str, bytes, str]]:
        query = sql.SQL(
            "SELECT id::text, channel, message, extract(epoch FROM expire)::text FROM {} "
            "WHERE channel = ANY(%s) AND expire > now() ORDER BY id"
        ).format(sql.Identifier(MESSAGE_TABLE))
        async with (await self.get_db_pool()).connection() as conn:
            cursor = await conn.execute(query, (channels,))
            return await cursor.fetchall()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        opening = self._pools.pop(loop, None)
        if opening is not None:
            try:
                pool = await opening
            except Exception:
                return
            await pool.close()


async def _autocommit(conn: psycopg.AsyncConnection) -> None:
    await conn.set_autocommit(True)


def default_database() -> dict:
    from django.db import connections

    return dict(connections["default"].settings_dict)


def direct_listen_params() -> dict:
    from ...connection import listener_conninfo

    return listener_conninfo("default")


class PostgresChannelLayer(core.PostgresChannelLayer):
    event_loop: asyncio.AbstractEventLoop | None  # upstream's, which ships no types

    def __init__(self, *args, **kwargs):
        from_default = "NAME" not in kwargs
        if from_default:
            kwargs = {**default_database(), **kwargs}
        options = dict(kwargs.get("OPTIONS") or {})
        options.pop("pool", None)  # Django's pool setting, not a libpq parameter
        kwargs["OPTIONS"] = options
        kwargs.setdefault("group_expiry", GROUP_EXPIRY)
        super().__init__(*args, **kwargs)
        self.django_db = PooledDatabaseLayer(kwargs.get("PSYCOPG_OPTIONS", {}), self.db_params, logger=logger)
        # The session-bound LISTEN: direct when the settings are Django's default database's.
        self.listen_params = direct_listen_params() if from_default else self.db_params
        self._delivered: dict[int, float] = {}  # message id -> its expiry (epoch seconds)
        self._supervisor: asyncio.Task | None = None
        self._cleaned_at = time.time()
        self._memberships: set[tuple[str, str]] = set()  # (group key, channel) added here, to renew
        self._renewed_at = time.time()
        self.reconnects = 0

    # -- the supervised LISTEN loop

    def _get_or_create_listener_task(self) -> tuple[asyncio.Event, bool]:
        # Upstream starts its listener only once per loop and never notices it died; this keeps
        # one supervisor task per loop and starts a new one only if it is gone.
        loop = asyncio.get_running_loop()
        if self.event_loop is not loop or self._supervisor is None or self._supervisor.done():
            self.listener_task_is_running, self.event_loop = asyncio.Event(), loop
            self._supervisor = loop.create_task(self.listen_to_all_channels())
        return self.listener_task_is_running, False

    async def listen_to_all_channels(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen_once()
                return  # shut down on request
            except (psycopg.Error, OSError, TimeoutError) as error:
                delay = backoff_delay(attempt, BACKOFF_INITIAL, BACKOFF_MAX)
                attempt += 1
                logger.warning("channel layer lost its LISTEN connection (%s); reconnecting in %.1fs",
                               one_line(error), delay)
                await asyncio.sleep(delay)

    async def _listen_once(self) -> None:
        params = {**self.listen_params, **KEEPALIVES, "application_name": APPLICATION_NAME + " listen"}
        async with await psycopg.AsyncConnection.connect(autocommit=True, **params) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
            # Listening first, then reading the table: a message sent meanwhile is seen at least once.
            for message_id, channel, message, expire in await self.django_db.unexpired_messages(self._own_channels()):
                self._dispatch(f"{message_id}:{channel}:{base64.b64encode(message).decode()}:{expire}")
            self._renewed_at = 0.0  # renewed at the first heartbeat: memberships may have expired meanwhile
            if self.listener_task_is_running.is_set():
                self.reconnects += 1
                logger.info("channel layer listening again (reconnect %d)", self.reconnects)
            self.listener_task_is_running.set()
            heartbeat = min(HEARTBEAT, self.group_expiry / 4) if self.group_expiry > 0 else HEARTBEAT
            while True:
                async for event in conn.notifies(timeout=heartbeat):
                    if event.payload == "1:shutdown":
                        self.listener_task_is_running.clear()
                        return
                    self._dispatch(event.payload)
                await conn.execute("SELECT 1")  # a dead connection raises here
                await self._forget_expired(conn)
                await self._renew_memberships(conn)

    async def _get_or_create_channel_advisory_lock(self, channel: str) -> bool:
        # A channel's first receive() may come after the listener started (for another channel):
        # what was stored for it before is read here, once its lock is held (notifications for
        # it are dispatched from then on, so the two overlap and de-duplication by id does the rest).
        if self._channel_advisory_locks.get(channel, False):
            return True
        locked = await super()._get_or_create_channel_advisory_lock(channel)
        if locked:
            for message_id, name, message, expire in await self.django_db.unexpired_messages([channel]):
                self._dispatch(f"{message_id}:{name}:{base64.b64encode(message).decode()}:{expire}")
        return locked

    def _own_channels(self) -> list[str]:
        return [channel for channel, locked in self._channel_advisory_locks.items() if locked]

    def _dispatch(self, payload: str) -> None:
        parts = payload.split(":")
        if len(parts) < 2 or not self._channel_advisory_locks.get(parts[1], False):
            return  # another process receives on that channel
        message_id = int(parts[0])
        if message_id in self._delivered:
            return
        self._delivered[message_id] = float(parts[3]) if len(parts) == 4 else time.time() + self.expiry
        self._get_or_create_queue(parts[1]).put_nowait(payload)

    async def _forget_expired(self, conn: psycopg.AsyncConnection) -> None:
        now = time.time()
        for message_id in [i for i, expire in self._delivered.items() if expire < now]:
            del self._delivered[message_id]
        if now - self._cleaned_at >= CLEANUP_INTERVAL:
            self._cleaned_at = now
            await conn.execute(sql.SQL("DELETE FROM {} WHERE expire < now()").format(sql.Identifier(MESSAGE_TABLE)))

    async def _renew_memberships(self, conn: psycopg.AsyncConnection) -> None:
        """Every quarter of group_expiry: this process's memberships live on (and come back if
        another process deleted them as expired, after this one was away), expired ones go."""
        if self.group_expiry <= 0 or time.time() - self._renewed_at < self.group_expiry / 4:
            return
        self._renewed_at = time.time()
        table = sql.Identifier(GROUP_CHANNEL_TABLE)
        if self._memberships:
            keys, channels = (list(column) for column in zip(*self._memberships, strict=True))
            await conn.execute(sql.SQL(
                "UPDATE {} SET expire = now() + make_interval(secs => %s) "
                "WHERE (group_key, channel) IN (SELECT * FROM unnest(%s::text[], %s::text[]))").format(table),
                (self.group_expiry, keys, channels))
            cursor = await conn.execute(sql.SQL(
                "INSERT INTO {0} (group_key, channel, expire) "
                "SELECT m.group_key, m.channel, now() + make_interval(secs => %s) "
                "FROM unnest(%s::text[], %s::text[]) AS m(group_key, channel) WHERE NOT EXISTS "
                "(SELECT 1 FROM {0} g WHERE g.group_key = m.group_key AND g.channel = m.channel) "
                "RETURNING group_key, channel").format(table),
                (self.group_expiry, keys, channels))
            # A group_discard that ran meanwhile must not be undone by the re-insert.
            for group_key, channel in await cursor.fetchall():
                if (group_key, channel) not in self._memberships:
                    await self.django_db.delete_channel_group(group_key, channel)
        await conn.execute(sql.SQL("DELETE FROM {} WHERE expire < now()").format(table))

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        group_key = self._group_key(group)
        # Expiry in the database's time (renewals and the group_send filter use it too).
        insert = sql.SQL("INSERT INTO {} (group_key, channel, expire) "
                         "VALUES (%s, %s, now() + make_interval(secs => %s))").format(
            sql.Identifier(GROUP_CHANNEL_TABLE))
        async with (await self.django_db.get_db_pool()).connection() as conn:
            await conn.execute(insert, (group_key, channel, self.group_expiry))
        self._memberships.add((group_key, channel))

    async def group_discard(self, group: str, channel: str, expire=None) -> None:
        # Upstream also schedules a clean-up task that sleeps for minutes; the supervisor cleans instead.
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        self._memberships.discard((self._group_key(group), channel))
        await self.django_db.delete_channel_group(self._group_key(group), channel)

    async def close(self) -> None:
        """Stop listening and close this loop's connections (tests, shutdown)."""
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
        self._supervisor = None
        await self.django_db.close()

    # -- sending: one statement for the members and the copies

    async def group_send(self, group: str, message: dict) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        unexpired = sql.SQL(" AND expire > now()") if self.group_expiry > 0 else sql.SQL("")
        insert = sql.SQL("INSERT INTO {} (channel, message, expire) "
                         "SELECT DISTINCT channel, %s::bytea, now() + make_interval(secs => %s) "
                         "FROM {} WHERE group_key = %s{}").format(
            sql.Identifier(MESSAGE_TABLE), sql.Identifier(GROUP_CHANNEL_TABLE), unexpired)
        async with (await self.django_db.get_db_pool()).connection() as conn:
            await conn.execute(insert, (self.serialize(message), self.expiry, self._group_key(group)))
