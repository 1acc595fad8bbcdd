"""What every event source's listener shares: connections tagged per process, the advisory lock
that makes one process of a name active and the others standbys (listener.lock), queries bounded
in time (`_bounded`: the heartbeat), the outer loop that reconnects with capped exponential backoff and
jitter, the hand-over to the sink, and the state notices (in the output, on channel 'system',
and to the sink).

Subclasses implement `_session(stop)`: connect, take the lock, serve until stopped or an error.
The NOTIFY source is listener.notify_source.Listener, the WAL source listener.wal.WalListener.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import psycopg
from psycopg import sql

from ..exceptions import ConnectionDeadError, PgNotifyError, one_line
from . import lock, probe
from .backoff import backoff_delay
from .channels import SYSTEM
from .eventlog import EventLog
from .notification import Notification
from .receiving import NotificationReceiver
from .stats import ListenerStats

logger = logging.getLogger(__name__)

KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 4,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 9000,
    "connect_timeout": 5,
}
# Server side, on the session holding the lock: a vanished client releases it within ~10 s, idle
# (keepalive) or not (tcp_user_timeout: notifications sent to it and never acknowledged).
SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 4; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 2; "
                      "SET tcp_user_timeout = 9000")
_TERMINATE_OWN = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
     WHERE datname = current_database() AND position(%s in application_name) > 0 AND pid <> ALL(%s)
"""
# The live checkpoint: a snapshot, and a marker queued behind everything the snapshot sees.
_NOTIFY_SYSTEM = f"SELECT pg_notify('{SYSTEM}', %s)"



RECOVERABLE = (psycopg.Error, OSError, TimeoutError)
# States in which a connection was up: leaving them by an error is "lost", not "unreachable".
_CONNECTED_STATES = {"connected", "standby", "replaying", "live", "behind_retention"}


class Sink(Protocol):
    """Where the listener hands things on."""

    async def handle(self, notification: Notification) -> None:
        """Take a notification; should not wait on anything slow (a Dispatcher only queues it)."""

    async def notice(self, notice: dict) -> None:
        """Take a state notice; must not wait on the network (the listener sends notices on its
        way back from a lost connection)."""

    async def flush(self) -> None:
        """Called before a position is recorded: everything handed on must be taken."""


@dataclass
class ListenerOptions:
    channels: list[str]
    name: str = "default"
    # The alias of the database read (`listen_notify --database`): events of any other than
    # 'default' carry it as `database` (docs/wire-format.md).
    database: str = "default"
    retention: timedelta = timedelta(hours=24)
    poll_interval: float = 0.25
    checkpoint_interval: float = 1.0
    position_save_interval: float = 30.0
    heartbeat_timeout: float = 5.0
    backoff_initial: float = 0.25
    backoff_max: float = 10.0
    prune_interval: float = 60.0
    queue_warning: float = 0.5
    query_timeout: float = 60.0  # an event-log query that reads many rows (a catch-up page, a count)
    holder_interval: float = 10.0  # a standby looks up who holds its name this often


class BaseListener:
    def __init__(self, conninfo: dict, options: ListenerOptions, sink: Sink):
        self.conninfo = conninfo
        self.options = options
        self.sink = sink
        # Live streams (pgnotify.web.live): how many notifications were handed on, and the snapshot
        # of the last checkpoint whose events all were, set just before the sink is flushed for it.
        self.handed_on = 0
        self.checkpoint: str | None = None
        self.stats = ListenerStats()
        self._own_pids: list[int] = []
        self._notifier: psycopg.AsyncConnection | None = None
        self._connections: list[psycopg.AsyncConnection] = []
        self._connected_before = False
        self._saved_at = 0.0  # when the position was last recorded
        self._pruned_at = 0.0  # when the event log was last pruned (0: again at the next checkpoint)
        self._partitions_checked_at = 0.0
        # Marks this process's backends, so a reconnect can end the ones a dead session left behind.
        self._token = f" {secrets.token_hex(4)}: "

    # -- the outer loop: connect, serve, reconnect with capped exponential backoff and jitter

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        try:
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
        finally:
            await self._set_state("stopped")

    def abort(self) -> None:
        """Close the connections at once, without a word to the server: for a stop that cannot
        wait any longer (the task running `run` is to be cancelled next)."""
        for conn in self._connections:
            conn.pgconn.finish()

    async def _session(self, stop: asyncio.Event) -> None:
        """Connect, take the name's lock (`_started`), serve until `stop` or an error (raised to `run`)."""
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def _started(self, listen_conn: psycopg.AsyncConnection, query_conn: psycopg.AsyncConnection,
                       stop: asyncio.Event) -> AsyncIterator[NotificationReceiver | None]:
        """A session's start, the same for every source: end what a dead session of this process
        left behind, prove `listen_conn` can LISTEN, take the name's lock (a standby until then).
        Yields the receiver of `listen_conn`'s notifications, or None when stopped as a standby.
        `query_conn` may be `listen_conn` itself (it then needs another session for the proof)."""
        self._connections = list(dict.fromkeys([listen_conn, query_conn]))
        self._own_pids = [conn.info.backend_pid for conn in self._connections]
        if self._connected_before:
            self.stats.reconnects += 1
            await self._end_earlier_backends(query_conn)
        self._connected_before = True
        self._notifier = query_conn
        receiver = NotificationReceiver(listen_conn)  # before LISTEN: it collects from the start
        try:
            await self._bounded(listen_conn, listen_conn.execute(SERVER_KEEPALIVES))
            await self._prove_listening(listen_conn, receiver, None if query_conn is listen_conn else query_conn)
            await self._set_state("connected")
            yield receiver if await self._acquire_lock(listen_conn, query_conn, stop) else None
        finally:
            self._notifier = None
            self._connections = []

    async def _connect(self, role: str, **params) -> psycopg.AsyncConnection:
        application_name = lock.application_name(role, self._token, self.options.name)
        params = {**KEEPALIVES, **self.conninfo, **params, "application_name": application_name}
        return await psycopg.AsyncConnection.connect(autocommit=True, **params)

    async def _end_earlier_backends(self, conn: psycopg.AsyncConnection) -> None:
        """A session we took for dead may live on in the server, holding our lock: end it."""
        cursor = await self._bounded(conn, conn.execute(_TERMINATE_OWN, [self._token, self._own_pids]))
        ended = (await cursor.fetchone())[0]
        if ended:
            logger.info("ended %d backends of an earlier session of this listener", ended)

    async def _prove_listening(self, listen_conn: psycopg.AsyncConnection, receiver: NotificationReceiver,
                               sender: psycopg.AsyncConnection | None = None) -> None:
        """Refuse a session that cannot LISTEN, before anything depends on it (the lock, the position):
        a notification sent by another session (`sender`, else a connection of its own) must reach
        `listen_conn` within the heartbeat's bound. Behind a transaction pooler it never does."""
        channel = probe.channel()
        await self._bounded(listen_conn, listen_conn.execute(probe.listen(channel)))
        async with contextlib.AsyncExitStack() as stack:
            if sender is None:
                sender = await stack.enter_async_context(await self._connect("probe"))
            await self._bounded(sender, sender.execute(probe.SEND, [channel]))
        deadline = time.monotonic() + self.options.heartbeat_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if any(name == channel for name, _, _ in await receiver.receive(remaining)):
                break
        else:
            # A session that answers but heard nothing cannot LISTEN; one that does not answer is a
            # dead connection (retried). Whatever the query's reply brought is looked at too.
            await self._bounded(listen_conn, listen_conn.execute("SELECT 1"))
            if not any(name == channel for name, _, _ in receiver.take()):
                raise probe.refusal(self.options.heartbeat_timeout)
        await self._bounded(listen_conn, listen_conn.execute(probe.unlisten(channel)))

    # -- shared by every event source: the lock on the name, bounded queries

    async def _acquire_lock(self, conn: psycopg.AsyncConnection, query_conn: psycopg.AsyncConnection,
                            stop: asyncio.Event) -> bool:
        """Take the name's lock on `conn`, waiting as a standby that says who holds it."""
        name = self.options.name
        announced, looked_up = None, 0.0
        while not stop.is_set():
            if await self._bounded(conn, lock.try_lock(conn, name)):
                return True
            if time.monotonic() - looked_up >= self.options.holder_interval:
                looked_up = time.monotonic()
                held_by = await self._bounded(query_conn, lock.holder(query_conn, name)) or "another session"
                if held_by != announced:
                    announced = held_by
                    await self._set_state("standby", held_by=held_by, hint=(
                        "this listener takes over when that one stops; to run another listener beside it, "
                        "give it another name (listen_notify --name OTHER)"))
            await wait(stop, self.options.poll_interval)
        return False

    def _guard(self, conn: psycopg.AsyncConnection):
        """Bounds for the event log's queries on `conn` (see EventLog)."""
        def guard(query, slow: bool = False):
            return self._bounded(conn, query, self.options.query_timeout if slow else None)

        return guard

    async def _bounded(self, conn: psycopg.AsyncConnection, query, seconds: float | None = None):
        """Await a query on `conn` within `seconds` (the heartbeat timeout); without a reply in
        time, close the connection and raise ConnectionDeadError.

        A cancel request would need the server that does not answer, so the socket is closed."""
        timeout = seconds or self.options.heartbeat_timeout
        task = asyncio.ensure_future(query)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            conn.pgconn.finish()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise ConnectionDeadError(f"no reply from the server within {timeout:g} s") from None
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def _listen(self, conn: psycopg.AsyncConnection, extra: Sequence[str] = ()) -> None:
        channels = [*self.options.channels, *extra]
        statement = sql.SQL("; ").join(sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in channels)
        # autocommit: the LISTEN is committed before any state is read
        await self._bounded(conn, conn.execute(statement))
        logger.debug("listening on %s", ", ".join(self.options.channels))

    # -- the hand-over to the sink

    async def _hand_on(self, notification: Notification) -> None:
        self.handed_on += 1
        try:
            await self.sink.handle(notification)
        except Exception:
            logger.exception("the sink failed on a %s notification", notification.channel)

    async def _sink_has_taken_everything(self) -> bool:
        """Flush the sink: True once it has taken everything handed on, else False (a handler is
        behind) and the position must hold where it was."""
        try:
            await self.sink.flush()
            return True
        except PgNotifyError as error:
            logger.debug("position of %s held back: %s", self.options.name, error)
            return False

    # -- upkeep at checkpoints, the same cadence for every source

    async def _upkeep(self, log: EventLog, moment: float) -> None:
        """Every `prune_interval`: prune the event log (the next checkpoint goes on while more is
        left), and warn about the partitions of watched tables the source cannot serve."""
        if moment - self._pruned_at >= self.options.prune_interval:
            deleted, done = await log.prune(self.options.retention)
            self._pruned_at = moment if done else 0.0
            if deleted:
                logger.info("pruned %d events older than %s", deleted, self.options.retention)
        if moment - self._partitions_checked_at >= self.options.prune_interval:
            self._partitions_checked_at = moment
            await self._warn_about_partitions(log)

    async def _warn_about_partitions(self, log: EventLog) -> None:
        """Log each partition of a watched table whose changes the source would miss."""
        raise NotImplementedError

    # -- state notices: in the output, on channel 'system', and to the sink

    async def _set_state(self, state: str, **detail) -> None:
        self.stats.state = state
        notice = {"type": "listener", "state": state, "name": self.options.name,
                  "reconnects": self.stats.reconnects, **detail}
        # The sink prints notices; the log gets them at DEBUG so the output has one line each.
        logger.debug("listener %s: %s %s", self.options.name, state, detail)
        if self._notifier is not None and state not in {"lost", "unreachable"}:
            notifier = self._notifier
            try:
                await self._bounded(notifier, notifier.execute(_NOTIFY_SYSTEM, [json.dumps(notice)]))
            except RECOVERABLE:
                pass  # the connection is going; the notice still reaches the output and the sink
        try:
            # A sink's notice must not wait on the network; bounded all the same.
            async with asyncio.timeout(self.options.heartbeat_timeout):
                await self.sink.notice(notice)
        except Exception:
            logger.exception("the sink failed on a state notice")



async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when stop was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False
