"""The LISTEN loop: psycopg only, no Django.

One process per listener name is active at a time (an advisory lock); the others wait as
standbys. The active one LISTENs, catches up from its recorded position in the event log,
then hands on live notifications. Every second it checkpoints: it takes a snapshot S and, in
the same statement, notifies a marker channel of its own. PostgreSQL delivers notifications in
commit order, so when the marker comes back every transaction S sees has had its
notifications delivered: the listener flushes the sink and records S as its position, with no
query on the event log. The log is read at start (catch-up), on stop, and when a marker does
not come back in time (`position_save_interval`). So a committed change is never lost, and
within one process no event is handed on twice: an event is dropped when the position already
covers its transaction or its id was handed on since.

The checkpoint's snapshot query is also the heartbeat of the LISTEN connection: without a
reply within `heartbeat_timeout` the connection is taken for dead and closed at once, and
the listener reconnects with capped exponential backoff and jitter. Every other query is
bounded the same way (`query_timeout` for those that may read many rows), and the sink is
handed things without waiting on them (a Dispatcher only queues), so nothing the listener
awaits on its way back depends on the network that just died. A silently dead session
still holds the advisory lock on the server, so on reconnect the process terminates its own
earlier backends (tagged with a per-process token in application_name) before it waits for
the lock; the server also drops dead TCP peers of the LISTEN session by keepalive, so a
standby elsewhere can take over when the active host vanishes (within about 10 s).

What belongs to the NOTIFY source and what any source shares: the lock on the name
(listener.lock), state notices (`_set_state`), the hand-over to the sink (`_hand_on`) and
recording a position once the sink has taken everything it covers (`_advance`) are shared; the
LISTEN session, markers, chunks and the event log (`_session`, `_serve`, `_deliver`,
`_checkpoint`) are the NOTIFY source's.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import psycopg
from psycopg import sql

from ..exceptions import ConnectionDeadError, PgNotifyError, one_line
from . import lock
from .backoff import backoff_delay
from .eventlog import EventLog
from .notification import Notification, now
from .partitions import unwatched_partitions
from .receiving import NotificationReceiver
from .snapshots import Snapshot
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
# Server side, on the session holding the lock: a vanished client releases it within ~10 s, idle
# (keepalive) or not (tcp_user_timeout: notifications sent to it and never acknowledged).
_SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 4; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 2; "
                      "SET tcp_user_timeout = 9000")
_TERMINATE_OWN = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
     WHERE datname = current_database() AND position(%s in application_name) > 0 AND pid <> ALL(%s)
"""
# The live checkpoint: a snapshot, and a marker queued behind everything the snapshot sees.
_MARK = "SELECT pg_current_snapshot()::text, pg_notification_queue_usage(), pg_notify(%s, %s)"
_NOTIFY_SYSTEM = "SELECT pg_notify('system', %s)"


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


class Listener:
    def __init__(self, conninfo: dict, options: ListenerOptions, sink: Sink):
        self.conninfo = conninfo
        self.options = options
        self.sink = sink
        self.stats = ListenerStats()
        # Events handed on whose transactions the position does not cover yet: id -> txid.
        self._handed: dict[int, int] = {}
        self._position: Snapshot | None = None
        self._saved_position: str | None = None
        self._saved_at = 0.0
        self._pruned_at = 0.0
        self._partitions_checked_at = 0.0
        self._own_pids: list[int] = []
        self._notifier: psycopg.AsyncConnection | None = None
        self._connections: list[psycopg.AsyncConnection] = []
        self._connected_before = False
        self._mark_channel = ""  # set per session: it names the LISTEN backend
        self._marks_sent = 0
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
                    await _wait(stop, delay)
        finally:
            await self._set_state("stopped")

    def abort(self) -> None:
        """Close the connections at once, without a word to the server: for a stop that cannot
        wait any longer (the task running `run` is to be cancelled next)."""
        for conn in self._connections:
            conn.pgconn.finish()

    async def _session(self, stop: asyncio.Event) -> None:
        async with await self._connect("listen") as listen_conn, await self._connect("query") as query_conn:
            self._connections = [listen_conn, query_conn]
            self._own_pids = [listen_conn.info.backend_pid, query_conn.info.backend_pid]
            if self._connected_before:
                self.stats.reconnects += 1
                await self._end_earlier_backends(query_conn)
            self._connected_before = True
            self._notifier = query_conn
            receiver = NotificationReceiver(listen_conn)  # before LISTEN: it collects from the start
            try:
                await self._heartbeat(listen_conn, listen_conn.execute(_SERVER_KEEPALIVES))
                await self._set_state("connected")
                if not await self._acquire_lock(listen_conn, query_conn, stop):
                    return
                log = EventLog(query_conn, guard=self._guard(query_conn))
                await self._listen(listen_conn)
                await self._start_position(log)
                replayed = await self._checkpoint(listen_conn, log, save=True, announce=True)
                await self._set_state("live", replayed=replayed)
                await self._serve(listen_conn, receiver, log, stop)
                if await self._sink_has_taken_everything():  # else no position could be recorded anyway
                    await self._checkpoint(listen_conn, log, save=True)
            finally:
                self._notifier = None
                self._connections = []

    async def _serve(self, listen_conn: psycopg.AsyncConnection, receiver: NotificationReceiver, log: EventLog,
                     stop: asyncio.Event) -> None:
        next_checkpoint = time.monotonic() + self.options.checkpoint_interval
        marks: deque[tuple[int, Snapshot, float]] = deque()  # markers on their way: number, snapshot, sent at
        returned = 0  # the highest marker number that came back
        mark_channel = self._mark_channel
        deliver = self._deliver
        while not stop.is_set():
            # A steady flood is taken until the deadline, then the checkpoint (and heartbeat) runs.
            deadline = min(time.monotonic() + self.options.poll_interval, next_checkpoint)
            while (remaining := deadline - time.monotonic()) > 0:
                batch = await receiver.receive(remaining)
                received = now()  # one read: one arrival time
                for channel, payload, pid in batch:
                    if channel == mark_channel:
                        returned = max(returned, _mark_number(payload))
                    else:
                        await deliver(Notification(channel, payload, pid, received=received), log)
            moment = time.monotonic()
            position = None
            while marks and marks[0][0] <= returned:
                position = marks.popleft()[1]
            if position is not None:
                await self._advance(position, log)
            elif marks and moment - marks[0][2] >= self.options.position_save_interval:
                # A marker long overdue (a flood ahead of it): read what a new snapshot covers from the log.
                marks.clear()
                await self._checkpoint(listen_conn, log)
            if moment >= next_checkpoint:
                marks.append(await self._mark(listen_conn))
                next_checkpoint = moment + self.options.checkpoint_interval

    async def _connect(self, role: str) -> psycopg.AsyncConnection:
        application_name = lock.application_name(role, self._token, self.options.name)
        params = {**KEEPALIVES, **self.conninfo, "application_name": application_name}
        return await psycopg.AsyncConnection.connect(autocommit=True, **params)

    async def _end_earlier_backends(self, conn: psycopg.AsyncConnection) -> None:
        """A session we took for dead may live on in the server, holding our lock: end it."""
        cursor = await self._heartbeat(conn, conn.execute(_TERMINATE_OWN, [self._token, self._own_pids]))
        ended = (await cursor.fetchone())[0]
        if ended:
            logger.info("ended %d backends of an earlier session of this listener", ended)

    # -- shared by every event source: the lock on the name, bounded queries

    async def _acquire_lock(self, conn: psycopg.AsyncConnection, query_conn: psycopg.AsyncConnection,
                            stop: asyncio.Event) -> bool:
        """Take the name's lock on `conn`, waiting as a standby that says who holds it."""
        name = self.options.name
        announced, looked_up = None, 0.0
        while not stop.is_set():
            if await self._heartbeat(conn, lock.try_lock(conn, name)):
                return True
            if time.monotonic() - looked_up >= self.options.holder_interval:
                looked_up = time.monotonic()
                held_by = await self._heartbeat(query_conn, lock.holder(query_conn, name)) or "another session"
                if held_by != announced:
                    announced = held_by
                    await self._set_state("standby", held_by=held_by, hint=(
                        "this listener takes over when that one stops; to run another listener beside it, "
                        "give it another name (listen_notify --name OTHER)"))
            await _wait(stop, self.options.poll_interval)
        return False

    def _guard(self, conn: psycopg.AsyncConnection):
        """Bounds for the event log's queries on `conn` (see EventLog)."""
        def guard(query, slow: bool = False):
            return self._heartbeat(conn, query, self.options.query_timeout if slow else None)

        return guard

    async def _heartbeat(self, conn: psycopg.AsyncConnection, query, seconds: float | None = None):
        """Await a query on `conn`; without a reply in time, close the connection and raise.

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

    # -- the NOTIFY source

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        self._mark_channel = f"pgnotify_checkpoint_{conn.info.backend_pid}"
        channels = [*self.options.channels, self._mark_channel]
        statement = sql.SQL("; ").join(sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in channels)
        # autocommit: the LISTEN is committed before any state is read
        await self._heartbeat(conn, conn.execute(statement))
        logger.debug("listening on %s", ", ".join(self.options.channels))

    async def _start_position(self, log: EventLog) -> None:
        saved, age = await log.load_position(self.options.name)
        if saved is None:
            # A new name starts at the newest committed event, recorded before anything is handed on.
            current, _ = await log.current()
            saved = await log.start_position(self.options.name, current)
        elif self._position is not None and saved.text in {self._saved_position, self._position.text}:
            return  # our own position: the in-memory one may be ahead of the last save
        elif age is not None and age > self.options.retention:
            await self._set_state(
                "behind_retention",
                warning=f"position of '{self.options.name}' is {age} old, older than the retention of "
                f"{self.options.retention}: events pruned meanwhile are lost; going on from the oldest kept",
            )
        # Any other saved position was recorded by another process after ours (it took over from
        # ours), so it covers everything we handed on: taking it hands nothing on twice.
        self._position, self._saved_position = saved, saved.text
        self._saved_at = time.monotonic()

    # -- delivery

    async def _deliver(self, notification: Notification, log: EventLog) -> None:
        event = notification.event
        if event is not None:
            event_id, txid = event["id"], event["txid"]
            if event_id in self._handed or self._position.sees(txid):
                self.stats.duplicates_dropped += 1
                return
            if event.get("truncated") is True:
                payload = await log.payload(event_id)
                if payload is not None:
                    notification.restore(payload)
            self._handed[event_id] = txid
        elif (chunk := notification.chunk) is not None:
            await self._expand(notification, chunk, log)
            return
        elif notification.channel == "system" and notification.pid in self._own_pids:
            return  # our own state notice, already handed on locally
        self.stats.record(notification)
        await self._hand_on(notification)

    async def _expand(self, notification: Notification, chunk: tuple[int, int, int], log: EventLog) -> None:
        """Hand on the events a bulk statement's chunk notification stands for (one query)."""
        first_id, last_id, txid = chunk
        if self._position.sees(txid):
            return  # the position covers the transaction: its events were handed on
        for payload in await log.chunk(first_id, last_id, txid):
            await self._deliver(Notification(notification.channel, payload, notification.pid), log)

    async def _mark(self, listen_conn: psycopg.AsyncConnection) -> tuple[int, Snapshot, float]:
        """Take a snapshot and send a marker behind it: the live checkpoint's first half."""
        self._marks_sent += 1
        cursor = await self._heartbeat(listen_conn, listen_conn.execute(
            _MARK, [self._mark_channel, str(self._marks_sent)]))
        text, usage, _ = await cursor.fetchone()
        self._note_queue_usage(usage)
        return self._marks_sent, Snapshot.parse(text), time.monotonic()

    async def _checkpoint(self, listen_conn: psycopg.AsyncConnection, log: EventLog, save: bool = False,
                          announce: bool = False) -> int:
        """Hand on every committed event not yet seen, then record the position. Returns how many."""
        current, usage = await self._heartbeat(listen_conn, EventLog(listen_conn).current())
        self._note_queue_usage(usage)
        # Handed-on events of transactions `current` covers are in the log range; the rest are missing.
        skip = [i for i, txid in self._handed.items() if current.sees(txid)]
        if announce:
            missing = await log.count_pending(self._position, current) - len(skip)
            if missing:
                await self._set_state("replaying", events=missing)
        handed = 0
        async for channel, payload in log.pending(self._position, current, skip):
            await self._deliver(Notification(channel, payload, replayed=True), log)
            handed += 1
        if handed and not announce:
            logger.info("handed on %d events that arrived by the event log", handed)
        await self._advance(current, log, save=save or bool(handed))
        return handed

    # -- shared by every event source: the hand-over to the sink, positions, state notices

    async def _hand_on(self, notification: Notification) -> None:
        try:
            await self.sink.handle(notification)
        except Exception:
            logger.exception("the sink failed on a %s notification", notification.channel)

    async def _sink_has_taken_everything(self) -> bool:
        try:
            await self.sink.flush()
            return True
        except PgNotifyError as error:
            logger.debug("position of %s held back: %s", self.options.name, error)
            return False

    async def _advance(self, current: Snapshot, log: EventLog, save: bool = False) -> None:
        """Make `current` the position, every event it covers having been handed on: flush the
        sink, then record the position (when something changed or a while has passed)."""
        self._position = current
        before = len(self._handed)
        self._handed = {i: t for i, t in self._handed.items() if not current.sees(t)}
        covered = len(self._handed) < before
        try:
            await self.sink.flush()
        except PgNotifyError as error:  # a handler has not taken everything: keep the old position
            logger.debug("position of %s held back: %s", self.options.name, error)
            self._saved_at = 0.0  # record the position at the first checkpoint that flushes
            return
        now = time.monotonic()
        if save or covered or now - self._saved_at >= self.options.position_save_interval:
            await log.save_position(self.options.name, current)
            self._saved_position, self._saved_at = current.text, now
        if now - self._pruned_at >= self.options.prune_interval:
            await self._prune(log, now)
        if now - self._partitions_checked_at >= self.options.prune_interval:
            self._partitions_checked_at = now
            await self._warn_unwatched_partitions(log)

    async def _prune(self, log: EventLog, now: float) -> None:
        deleted, done = await log.prune(self.options.retention)
        # More left than one round may delete: go on at the next checkpoint, not a minute later.
        self._pruned_at = now if done else 0.0
        if deleted:
            logger.info("pruned %d events older than %s", deleted, self.options.retention)

    async def _warn_unwatched_partitions(self, log: EventLog) -> None:
        for partition, table in await unwatched_partitions(log.connection):
            logger.warning("partition %s of watched table %s has no pgnotify trigger: writes straight to it send "
                           "no events until `manage.py migrate` attaches one", partition, table)

    def _note_queue_usage(self, usage: float) -> None:
        if usage >= self.options.queue_warning > self.stats.queue_usage:
            logger.warning("notification queue is %.0f%% full: a listener is not keeping up", usage * 100)
        self.stats.queue_usage = usage

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
                await self._heartbeat(notifier, notifier.execute(_NOTIFY_SYSTEM, [json.dumps(notice)]))
            except RECOVERABLE:
                pass  # the connection is going; the notice still reaches the output and the sink
        try:
            # A sink's notice must not wait on the network; bounded all the same.
            async with asyncio.timeout(self.options.heartbeat_timeout):
                await self.sink.notice(notice)
        except Exception:
            logger.exception("the sink failed on a state notice")


def _mark_number(payload: str) -> int:
    return int(payload) if payload.isdigit() else 0


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when stop was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False
