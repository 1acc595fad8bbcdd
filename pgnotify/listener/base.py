"""What every event source's listener shares: connections tagged per process, the advisory lock
that makes one process of a name active and the others standbys, the heartbeat of a query, the
outer loop that reconnects with capped exponential backoff and jitter, and the state notices
(in the output, on channel 'system', and to the sink).

Subclasses implement `_session(stop)`: connect, take the lock, serve until stopped or an error.
"""

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import psycopg
from psycopg import sql

from ..exceptions import ConnectionDeadError, one_line
from .backoff import backoff_delay
from .notification import Notification
from .stats import ListenerStats

logger = logging.getLogger(__name__)

# Client side: notice a half-open TCP connection within about 10 s, even when no query runs.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 4,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 9000,
    "connect_timeout": 5,
}
# Server side, on the session holding the lock: a vanished client releases it within ~10 s.
SERVER_KEEPALIVES = "SET tcp_keepalives_idle = 4; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 2"
_TERMINATE_OWN = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
     WHERE datname = current_database() AND position(%s in application_name) > 0 AND pid <> ALL(%s)
"""
_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"

RECOVERABLE = (psycopg.Error, OSError, TimeoutError)
# States in which a connection was up: leaving them by an error is "lost", not "unreachable".
_CONNECTED_STATES = {"connected", "standby", "replaying", "live", "behind_retention"}


class Sink(Protocol):
    """Where the listener hands things on."""

    async def handle(self, notification: Notification) -> None: ...

    async def notice(self, notice: dict) -> None: ...

    async def flush(self) -> None:
        """Called before a position is recorded: everything handed on must be taken."""


@dataclass
class ListenerOptions:
    channels: list[str]
    name: str = "default"
    retention: timedelta = timedelta(hours=24)
    poll_interval: float = 0.25
    checkpoint_interval: float = 1.0
    position_save_interval: float = 30.0
    heartbeat_timeout: float = 5.0
    backoff_initial: float = 0.25
    backoff_max: float = 10.0
    prune_interval: float = 60.0
    queue_warning: float = 0.5


class BaseListener:
    def __init__(self, conninfo: dict, options: ListenerOptions, sink: Sink):
        self.conninfo = conninfo
        self.options = options
        self.sink = sink
        self.stats = ListenerStats()
        self._own_pids: list[int] = []
        self._notifier: psycopg.AsyncConnection | None = None
        self._connected_before = False
        # Marks this process's backends, so a reconnect can end the ones a dead session left behind.
        self._token = f" {secrets.token_hex(4)}: "

    # -- the outer loop: connect, serve, reconnect with capped exponential backoff and jitter

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                attempt = 0
            except RECOVERABLE as error:
                was = self.stats.state
                if was == "live":
                    attempt = 0
                delay = backoff_delay(attempt, self.options.backoff_initial, self.options.backoff_max)
                attempt += 1
                await self._set_state("lost" if was in _CONNECTED_STATES else "unreachable",
                                      error=one_line(error), retry_in_s=round(delay, 2), attempt=attempt)
                await wait(stop, delay)
        await self._set_state("stopped")

    async def _session(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def _connect(self, role: str, **params) -> psycopg.AsyncConnection:
        application_name = f"pgnotify {role}{self._token}{self.options.name}"[:63]
        params = {**KEEPALIVES, **self.conninfo, **params, "application_name": application_name}
        return await psycopg.AsyncConnection.connect(autocommit=True, **params)

    async def _end_earlier_backends(self, conn: psycopg.AsyncConnection) -> None:
        """A session we took for dead may live on in the server, holding our lock: end it."""
        cursor = await conn.execute(_TERMINATE_OWN, [self._token, self._own_pids])
        ended = (await cursor.fetchone())[0]
        if ended:
            logger.info("ended %d backends of an earlier session of this listener", ended)

    async def _acquire_lock(self, conn: psycopg.AsyncConnection, stop: asyncio.Event) -> bool:
        key = f"pgnotify.listener:{self.options.name}"
        while not stop.is_set():
            cursor = await self._heartbeat(conn, conn.execute(_LOCK, [key]))
            if (await cursor.fetchone())[0]:
                return True
            if self.stats.state != "standby":
                await self._set_state("standby")
            await wait(stop, self.options.poll_interval)
        return False

    async def _heartbeat(self, conn: psycopg.AsyncConnection, query):
        """Await a query on `conn`; without a reply in time, close the connection and raise.

        A cancel request would need the server that does not answer, so the socket is closed."""
        task = asyncio.ensure_future(query)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.options.heartbeat_timeout)
        except TimeoutError:
            conn.pgconn.finish()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise ConnectionDeadError(f"no reply from the server within {self.options.heartbeat_timeout} s") from None

    async def _listen(self, conn: psycopg.AsyncConnection, extra: list[str] = ()) -> None:
        channels = [*self.options.channels, *extra]
        statement = sql.SQL("; ").join(sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in channels)
        await conn.execute(statement)  # autocommit: the LISTEN is committed before any state is read
        logger.debug("listening on %s", ", ".join(self.options.channels))

    async def _hand_on(self, notification: Notification) -> None:
        self.stats.record(notification)
        try:
            await self.sink.handle(notification)
        except Exception:
            logger.exception("a handler failed on %s notification", notification.channel)

    # -- state notices: in the output, on channel 'system', and to the sink

    async def _set_state(self, state: str, **detail) -> None:
        self.stats.state = state
        notice = {"type": "listener", "state": state, "name": self.options.name,
                  "reconnects": self.stats.reconnects, **detail}
        # The sink prints notices; the log gets them at DEBUG so the output has one line each.
        logger.debug("listener %s: %s %s", self.options.name, state, detail)
        if self._notifier is not None and state not in {"lost", "unreachable"}:
            try:
                await self._notifier.execute("SELECT pg_notify('system', %s)", [json.dumps(notice)])
            except RECOVERABLE:
                pass  # the connection is going; the notice still reaches the output and the sink
        try:
            await self.sink.notice(notice)
        except Exception:
            logger.exception("a handler failed on a state notice")


async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when stop was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False
