"""The NOTIFY source: the LISTEN loop, psycopg only, no Django.

One process per listener name is active at a time (an advisory lock); the others wait as
standbys. The active one proves its session receives other sessions' notifications (a
transaction pooler's does not: refused at start), LISTENs, catches up from its recorded position
in the event log, then hands on live notifications. Every second it checkpoints: it takes a
snapshot S on the LISTEN session, then notifies a marker channel of its own from the other
session. PostgreSQL delivers notifications in commit order, so when the marker comes back every
transaction S sees has had its notifications delivered: the listener flushes the sink and
records S as its position, with no query on the event log. The marker comes the way every other
session's notifications come, never back to its own sender only: a session that hears only
itself never moves the position by a marker. The log is read at start (catch-up), on stop, and when a marker does
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

What any source shares (the lock on the name, bounded queries, reconnecting, state notices, the
hand-over to the sink) is in listener.base; this module is the NOTIFY source's: the LISTEN
session, markers, chunks and the event log (`_session`, `_serve`, `_deliver`, `_checkpoint`,
`_advance`: `_move_to` and `_record`).
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence

import psycopg

from .base import BaseListener, ListenerOptions, Sink
from .channels import CHECKPOINT_PREFIX, SYSTEM
from .eventlog import EventLog
from .notification import Notification, now
from .partitions import unwatched_partitions
from .receiving import NotificationReceiver
from .snapshots import Snapshot

__all__ = ["Listener", "ListenerOptions", "Sink"]

logger = logging.getLogger(__name__)

# The live checkpoint: a snapshot on the LISTEN session (its heartbeat), then a marker from the
# other session, queued behind everything the snapshot sees.
_SNAPSHOT = "SELECT pg_current_snapshot()::text, pg_notification_queue_usage()"
_MARK = "SELECT pg_notify(%s, %s)"

class Listener(BaseListener):
    """The NOTIFY source: triggers write the event log and notify; this listener hands both on."""

    def __init__(self, conninfo: dict, options: ListenerOptions, sink: Sink):
        super().__init__(conninfo, options, sink)
        # Events handed on whose transactions the position does not cover yet: id -> txid.
        self._handed: dict[int, int] = {}
        self._position: Snapshot | None = None
        self._saved_position: str | None = None
        self._mark_channel = ""  # set per session: it names the LISTEN backend
        self._marks_sent = 0
        self._database = None if options.database == "default" else options.database

    async def _session(self, stop: asyncio.Event) -> None:
        async with await self._connect("listen") as listen_conn, await self._connect("query") as query_conn, \
                self._started(listen_conn, query_conn, stop) as receiver:
            if receiver is None:
                return
            log = EventLog(query_conn, guard=self._guard(query_conn))
            await self._listen(listen_conn)
            await self._start_position(log)
            replayed = await self._checkpoint(listen_conn, log, save=True, announce=True)
            await self._set_state("live", replayed=replayed)
            await self._serve(listen_conn, receiver, log, stop)
            if await self._sink_has_taken_everything():  # else no position could be recorded anyway
                await self._checkpoint(listen_conn, log, save=True)

    async def _serve(self, listen_conn: psycopg.AsyncConnection, receiver: NotificationReceiver, log: EventLog,
                     stop: asyncio.Event) -> None:
        next_checkpoint = time.monotonic() + self.options.checkpoint_interval
        marks: deque[tuple[int, Snapshot, float]] = deque()  # markers on their way: number, snapshot, sent at
        returned = 0  # the highest marker number that came back
        mark_channel = self._mark_channel
        deliver = self._deliver
        # A position is recorded (the sink flushed, the position saved) beside the reading, on the
        # query connection: inline, it held the notifications back 4-16 ms a second at 1,000
        # changes/s, the p99 of a change's latency. One at a time; one that comes while another
        # is recorded is recorded by the next marker's.
        recording: asyncio.Task[None] | None = None
        save = False  # a position moved over since the last recording covered events
        try:
            while not stop.is_set():
                # A steady flood is taken until the deadline, then the checkpoint (and heartbeat) runs.
                deadline = min(time.monotonic() + self.options.poll_interval, next_checkpoint)
                while (remaining := deadline - time.monotonic()) > 0:
                    batch = await receiver.receive(remaining)
                    if not batch:
                        continue
                    received = now()  # one read: one arrival time
                    notifications = [Notification(channel, payload, pid, False, received)
                                     for channel, payload, pid in batch if channel != mark_channel]
                    if len(notifications) < len(batch):
                        returned = max(returned, *(_mark_number(payload) for channel, payload, _ in batch
                                                   if channel == mark_channel))
                    await deliver(notifications, log)
                if recording is not None and recording.done():
                    recording.result()  # its error ends the session, as it did inline
                    recording = None
                moment = time.monotonic()
                position = None
                while marks and marks[0][0] <= returned:
                    position = marks.popleft()[1]
                if position is not None:
                    save = self._move_to(position) or save
                    if recording is None:
                        recording = asyncio.create_task(self._record(position, log, save))
                        save = False
                elif marks and moment - marks[0][2] >= self.options.position_save_interval:
                    # A marker long overdue (a flood ahead of it): read what a new snapshot covers from the log.
                    marks.clear()
                    if recording is not None:
                        await recording
                        recording = None
                    await self._checkpoint(listen_conn, log)
                if moment >= next_checkpoint:
                    marks.append(await self._mark(listen_conn, log.connection))
                    next_checkpoint = moment + self.options.checkpoint_interval
            if recording is not None:
                await recording
        finally:
            if recording is not None:
                recording.cancel()  # when the session ends with an error (its connections go); else done already

    async def _listen(self, conn: psycopg.AsyncConnection, extra: Sequence[str] = ()) -> None:
        self._mark_channel = f"{CHECKPOINT_PREFIX}{conn.info.backend_pid}"
        await super()._listen(conn, [*extra, self._mark_channel])

    async def _start_position(self, log: EventLog) -> None:
        saved, age = await log.load_position(self.options.name)
        if saved is None:
            # A new name starts at the newest committed event, recorded before anything is handed on.
            current, _ = await log.current()
            saved = await log.start_position(self.options.name, current)
        elif self._position is not None and saved.text in {self._saved_position, self._position.text}:
            return  # our own position: the in-memory one may be ahead of the last save
        elif age is not None and age > self.options.retention:
            oldest = await log.oldest()
            kept = f"the oldest kept is id {oldest}; the lost ones have lower ids" if oldest else "none is kept"
            warning = (f"position of '{self.options.name}' is {age} old, older than the retention of "
                       f"{self.options.retention}: events pruned meanwhile are lost ({kept}); going on from the "
                       "oldest kept")
            logger.error("%s", warning)
            await self._set_state("behind_retention", warning=warning, oldest_kept_id=oldest)
        # Any other saved position was recorded by another process after ours (it took over from
        # ours), so it covers everything we handed on: taking it hands nothing on twice.
        self._position, self._saved_position = saved, saved.text
        self._saved_at = time.monotonic()

    # -- delivery

    async def _deliver(self, notifications: Iterable[Notification], log: EventLog) -> None:
        """Hand on each of `notifications` but the events handed on before, and expand chunks.
        One coroutine for a whole read: the hot path of a flood."""
        # Neither the position nor the dict of handed-on events is replaced before this returns:
        # only _advance replaces them, from the task that awaits this.
        position, handed, stats = self._position, self._handed, self.stats
        assert position is not None  # set by _start_position, before anything is delivered
        # Snapshot.sees, inline: a call costs a flood as much as the test.
        xmin, xmax, in_progress = position.xmin, position.xmax, position.in_progress
        record, handle, database = stats.record, self.sink.handle, self._database
        for notification in notifications:
            event = notification.event
            if event is not None:
                event_id, txid = event["id"], event["txid"]
                if event_id in handed or txid < xmin or (txid < xmax and txid not in in_progress):
                    stats.duplicates_dropped += 1
                    continue
                if event.get("truncated") is True:
                    payload = await log.payload(event_id)
                    if payload is not None:
                        notification.restore(payload)
                handed[event_id] = txid
                if database is not None:
                    notification.add_database(database)
            elif (chunk := notification.chunk) is not None:
                await self._expand(notification, chunk, log)
                continue
            elif notification.channel == SYSTEM and notification.pid in self._own_pids:
                continue  # our own state notice, already handed on locally
            record(notification)
            self.handed_on += 1
            try:  # _hand_on, inline: one coroutine less per notification
                await handle(notification)
            except Exception:
                logger.exception("the sink failed on a %s notification", notification.channel)

    async def _expand(self, notification: Notification, chunk: tuple[int, int, int], log: EventLog) -> None:
        """Hand on the events a bulk statement's chunk notification stands for (one query)."""
        first_id, last_id, txid = chunk
        assert self._position is not None  # set by _start_position, before anything is delivered
        if self._position.sees(txid):
            return  # the position covers the transaction: its events were handed on
        channel, pid = notification.channel, notification.pid
        payloads = await log.chunk(first_id, last_id, txid)
        await self._deliver([Notification(channel, payload, pid) for payload in payloads], log)

    async def _mark(self, listen_conn: psycopg.AsyncConnection,
                    query_conn: psycopg.AsyncConnection) -> tuple[int, Snapshot, float]:
        """Take a snapshot and send a marker behind it, from another session: the live checkpoint's first half."""
        self._marks_sent += 1
        cursor = await self._bounded(listen_conn, listen_conn.execute(_SNAPSHOT))
        text, usage = await cursor.fetchone()
        self._note_queue_usage(usage)
        await self._bounded(query_conn, query_conn.execute(_MARK, [self._mark_channel, str(self._marks_sent)]))
        return self._marks_sent, Snapshot.parse(text), time.monotonic()

    async def _checkpoint(self, listen_conn: psycopg.AsyncConnection, log: EventLog, save: bool = False,
                          announce: bool = False) -> int:
        """Hand on every committed event not yet seen, then record the position. Returns how many."""
        current, usage = await self._bounded(listen_conn, EventLog(listen_conn).current())
        self._note_queue_usage(usage)
        position = self._position
        assert position is not None  # set by _start_position
        # Handed-on events of transactions `current` covers are in the log range; the rest are missing.
        skip = [i for i, txid in self._handed.items() if current.sees(txid)]
        if announce:
            missing = await log.count_pending(position, current) - len(skip)
            if missing:
                await self._set_state("replaying", events=missing)
        handed = 0
        async for channel, payload in log.pending(position, current, skip):
            await self._deliver([Notification(channel, payload, replayed=True)], log)
            handed += 1
        if handed and not announce:
            logger.info("handed on %d events that arrived by the event log", handed)
        await self._advance(current, log, save=save or bool(handed))
        return handed
    async def _advance(self, current: Snapshot, log: EventLog, save: bool = False) -> None:
        """Make `current` the position, every event it covers having been handed on, and record it."""
        covered = self._move_to(current)
        await self._record(current, log, save or covered)

    def _move_to(self, current: Snapshot) -> bool:
        """Make `current` the position; True when it covers events handed on since the last one."""
        self._position = current
        before = len(self._handed)
        self._handed = {i: t for i, t in self._handed.items() if not current.sees(t)}
        self.checkpoint = current.text
        return len(self._handed) < before

    async def _record(self, current: Snapshot, log: EventLog, save: bool) -> None:
        """Flush the sink, then record the position `current` (when something changed or a while
        has passed)."""
        if not await self._sink_has_taken_everything():  # the old position holds
            self._saved_at = 0.0  # record the position at the first checkpoint that flushes
            return
        now = time.monotonic()
        if save or now - self._saved_at >= self.options.position_save_interval:
            await log.save_position(self.options.name, current)
            self._saved_position, self._saved_at = current.text, now
        await self._upkeep(log, now)

    async def _warn_about_partitions(self, log: EventLog) -> None:
        for partition, table in await unwatched_partitions(log.connection):
            logger.warning("partition %s of watched table %s has no pgnotify trigger: writes straight to it send "
                           "no events until `manage.py migrate` attaches one", partition, table)

    def _note_queue_usage(self, usage: float) -> None:
        if usage >= self.options.queue_warning > self.stats.queue_usage:
            logger.warning("notification queue is %.0f%% full: a listener is not keeping up", usage * 100)
        self.stats.queue_usage = usage

def _mark_number(payload: str) -> int:
    return int(payload) if payload.isdigit() else 0
