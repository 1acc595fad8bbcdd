"""The WAL source: change events decoded from the write-ahead log, no trigger on the writer's path.

One logical replication slot per listener name (and database) streams, with pgoutput, the
changes of the tables in the publication `pgnotify`. A name's first start creates its slot at
the current position, so it starts at the newest change. Each change becomes the same event the
NOTIFY source makes (changes.py, values.py) and goes to the same sink.

Position: the slot's confirmed position. Every `checkpoint_interval` the listener flushes the
sink and only then confirms the end of the last transaction handed on (or, between
transactions, the server's position of its last keepalive), so what the server may forget has
been taken by every handler. After a restart or a reconnect the server sends everything after
the confirmed position again, whole transactions from their Begin (at least once, with the same
ids: an id depends only on where its change is in the WAL and in its transaction). Within one
process nothing is handed on twice: a transaction handed on whole is skipped (commit LSNs only
grow), and of one a lost connection cut short, the changes already handed on. A slot invalidated by
`max_slot_wal_keep_size` is reported as `behind_retention` and made anew at the current position.

Live streams (pgnotify.web.live): each checkpoint also passes on a snapshot once every
transaction it sees has been handed on (`_passed_mark`), and, when PGNOTIFY["STREAMS"] is set,
first writes the streams' models' events to the event log, from which a subscription resumes.

Beside the stream, a normal connection holds the advisory lock (one active process per name, the
others standbys), LISTENs on the extra channels (system, cache_invalidate, ...) whose
notifications pass as they come, and runs the checkpoint's query, which is also its heartbeat;
the status update asks the server for a reply, the replication connection's heartbeat.
"""

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Sequence

import psycopg
from psycopg import errors

from ...exceptions import ConnectionDeadError, WalSetupError, one_line
from ..base import BaseListener, ListenerOptions, Sink
from ..channels import CACHE_INVALIDATE, SYSTEM
from ..eventlog import EventLog
from ..keys import pairing_key, unique_keys_sql
from ..notification import Notification, now
from ..partitions import partitions_without_full_identity
from ..receiving import NotificationReceiver, readable
from ..snapshots import Snapshot
from .changes import Shape, WalTable, Watched, commit_ts, full_xid
from .inserts import insert_events
from .protocol import (
    INSERT_HEAD,
    Begin,
    Change,
    Commit,
    Keepalive,
    Relation,
    Truncate,
    lsn_text,
    parse_copy_data,
    parse_lsn,
)
from .slots import PUBLICATION, SlotInfo, create_slot, drop_slot, save_position, slot_info, slot_name
from .stream import SESSION_OPTIONS, ReplicationStream
from .values import SCALARS, Convert, array_of, as_text

logger = logging.getLogger(__name__)

_NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, pg_current_wal_lsn()::text"
# The live checkpoint's first half (see _checkpoint): a snapshot S, then the WAL insert position W,
# read after it (the function in FROM is scanned before the select list is evaluated).
_MARK = ("SELECT pg_snapshot_xmax(s)::text::bigint, pg_current_wal_lsn()::text, s::text, "
         "pg_current_wal_insert_lsn()::text FROM pg_current_snapshot() s")
# For resume on live streams: the events handed on of the streams' models, in the event log.
# The payloads go as one JSON array (a list of texts would cost the listener 4 times the CPU).
_LOG = """
    INSERT INTO pgnotify_event (id, channel, txid, payload)
    SELECT (e->>'id')::bigint, c, (e->>'txid')::xid8, e
      FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS p(e, n)
      JOIN unnest(%s::text[]) WITH ORDINALITY AS ch(c, n) USING (n)
    ON CONFLICT (id) DO NOTHING
"""
_PUBLICATION = "SELECT count(*) FROM pg_publication WHERE pubname = %s"
# The event's `table`: the relation's name, with its schema when the search path does not find it
# (the rule of pgnotify.schema.tables.Relation.display, which the change trigger follows); and its unique
# keys, which say what its old and new rows are paired on.
_RELATION_FACTS = ("SELECT to_regclass(quote_ident(%(name)s)) IS NOT DISTINCT FROM %(oid)s::oid::regclass, "
                   + unique_keys_sql("%(oid)s::oid"))
_TYPE = """
    SELECT t.typtype, t.typcategory, t.typelem, t.typbasetype, coalesce(e.typdelim, ',')
      FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = %s
"""
# The server sends a keepalive each time it waits for WAL while the slot is not confirmed up to
# where it has read: on a busy cluster whose watched tables are quiet, one per commit anywhere.
# A read that brought only keepalives is followed by this nap, so they are read in batches: a
# fifth of a core at 12,000 commits/s otherwise, for at most this much on a change's latency.
KEEPALIVE_NAP = 0.001
_KEEPALIVE = 0x6B  # 'k'
# At a stop, how long the stream is read on for it to pass a last checkpoint mark.
LAST_MARK_WAIT = 1.0
# Setup errors no retry mends: told in one line, and the command stops.
_SETUP_ERRORS = (errors.ObjectNotInPrerequisiteState, errors.InsufficientPrivilege, errors.FeatureNotSupported)


class _Transaction:
    __slots__ = ("cache", "commit_lsn", "handed_on_until", "replayed", "skip", "ts", "txid")

    def __init__(self, begin: Begin, txid: int, skip: bool, replayed: bool, handed_on_until: int = -1):
        self.commit_lsn = begin.commit_lsn
        self.ts = commit_ts(begin.commit_time_us)
        self.txid = txid
        self.skip = skip
        self.replayed = replayed
        # Sent again after a reconnect cut it short: its events up to this id were handed on.
        self.handed_on_until = handed_on_until
        self.cache: dict[tuple[str, str], tuple[str, ...]] = {}  # (table, op) -> tags


class WalListener(BaseListener):
    def __init__(self, conninfo: dict, options: ListenerOptions, sink: Sink, tables: list[WalTable],
                 publication: str = PUBLICATION, retained_warning: int = 1 << 30,
                 logged_models: frozenset[str] = frozenset()):
        super().__init__(conninfo, options, sink)
        self.tables = tables
        self._channels = {target.channel for table in tables for target in table.targets}
        self.publication = publication
        self.retained_warning = retained_warning
        self.slot = ""  # named by the first session: the name holds the database's
        self._database = None if options.database == "default" else options.database  # `database`: docs/wire-format.md
        self._received = 0  # where the server may resume once the sink has taken everything
        self._confirmed = 0  # what the server was told
        self._last_commit = 0  # commit LSN of the last transaction handed on: none twice in a process
        self._types: dict[int, Convert] = dict(SCALARS)
        self._relations: dict[int, Watched | None] = {}
        self._next_xid = 0
        self._change_lsn = 0  # of the open transaction's last watched change (0: none yet)
        self._next_ordinal = 0  # the next event id at _change_lsn is _change_lsn + this
        self._open: _Transaction | None = None  # the transaction being decoded
        self._cut_short = (0, -1)  # (commit LSN, last event id handed on) of one a lost connection cut
        # The server's WAL position at each checkpoint not yet covered by ours, with its time: the
        # oldest one's age is how far the position is held back (a large transaction being decoded
        # holds it back before a single change of it arrives).
        self._server_marks: deque[tuple[int, float]] = deque()
        self._warned_retained = False
        self._leftover_triggers = 0
        # The event log's part (see _replay_event_log): transactions it handed on, skipped in the
        # stream, and the position to record once the slot is confirmed past them.
        self._log_replayed = False
        self._logged_txids: set[int] = set()
        self._log_position: tuple[Snapshot, int] | None = None
        # Live streams (pgnotify.web.live): the events of these models go to the event log, for a
        # resume; (channel, payload) handed on since the last checkpoint.
        self.logged_models = logged_models
        self._to_log: list[tuple[str, str]] = []
        # Events were written to the log that the name's saved log position may not cover.
        self._logged_since_saved = False
        # Checkpoint snapshots waiting for the stream to pass the WAL position read after them.
        self._marks: deque[tuple[int, str]] = deque()

    # -- the session

    async def _session(self, stop: asyncio.Event) -> None:
        async with await self._connect("listen") as conn, self._started(conn, conn, stop) as receiver:
            if receiver is None:
                return
            await self._listen(conn)
            await self._prepare_slot(conn)
            await self._replay_event_log(conn)
            wal_conn = await self._connect_stream()
            self._connections.append(wal_conn)
            try:
                self._own_pids.append(wal_conn.info.backend_pid)
                await self._stream(conn, receiver, wal_conn, stop)
            except psycopg.OperationalError as error:
                await wal_conn.close()  # the slot is free again
                await self._replace_slot_older_than_publication(conn, error)
                raise
            finally:
                await wal_conn.close()  # not `async with`: its exit would COMMIT on a streaming connection

    async def _connect_stream(self) -> psycopg.AsyncConnection:
        try:
            return await self._connect("wal", replication="database", options=SESSION_OPTIONS)
        except psycopg.OperationalError as error:
            if error.sqlstate == "42501":  # a role without REPLICATION
                raise WalSetupError(f"the WAL source needs a role with REPLICATION: {one_line(error)}") from error
            if "unsupported startup parameter: replication" in str(error):  # PgBouncer: no retry mends it
                raise WalSetupError("the WAL source's replication connection cannot go through PgBouncer: map this "
                                    "alias in PGNOTIFY[\"DIRECT\"] to an alias that reaches the database directly") \
                    from error
            raise

    async def _prepare_slot(self, conn: psycopg.AsyncConnection) -> None:
        """Check the publication, and make the slot: new at the current position for a new name,
        anew when max_slot_wal_keep_size invalidated it."""
        cursor = await self._bounded(conn, conn.execute(_PUBLICATION, [self.publication]))
        if not (await cursor.fetchone())[0]:
            raise WalSetupError(f"publication {self.publication!r} does not exist: run `manage.py migrate` with "
                                "PGNOTIFY['SOURCE'] = 'wal'")
        self.slot = slot_name(self.options.name, conn.info.dbname)
        info = await self._bounded(conn, slot_info(conn, self.slot))
        try:
            if info is not None and info.invalidated:
                # What was handed on last; everything after it, up to the new slot's start, is gone.
                lost_from = max(self._received, parse_lsn(info.confirmed_lsn) if info.confirmed_lsn else 0)
                await self._bounded(conn, drop_slot(conn, self.slot))
                self._received = self._confirmed = self._last_commit = 0
                await self._bounded(conn, create_slot(conn, self.slot), self.options.query_timeout)
                await self._report_lost(conn, lost_from, "was invalidated (max_slot_wal_keep_size), having "
                                        "fallen further behind than the limit (docs/sources.md sizes it)")
                info = await self._bounded(conn, slot_info(conn, self.slot))
            elif info is None and self._received:
                await self._set_state(
                    "behind_retention", slot=self.slot,
                    warning=f"replication slot {self.slot} of '{self.options.name}' was dropped while in use: "
                    "changes made meanwhile are lost; going on from the current position")
                self._received = self._confirmed = self._last_commit = 0
            # Creating a slot waits for the transactions running at that moment to end.
            if info is None and await self._bounded(conn, create_slot(conn, self.slot), self.options.query_timeout):
                logger.info("created replication slot %s for '%s'", self.slot, self.options.name)
        except _SETUP_ERRORS as error:
            raise WalSetupError(f"cannot create replication slot {self.slot}: {one_line(error)}") from error

    async def _report_lost(self, conn, lost_from: int, why: str) -> None:
        """Say loudly that the changes between `lost_from` and the new slot's start are gone."""
        info = await self._bounded(conn, slot_info(conn, self.slot))
        lost_to = parse_lsn(info.confirmed_lsn) if info and info.confirmed_lsn else 0
        lost_bytes = max(0, lost_to - lost_from)
        warning = (f"replication slot {self.slot} of '{self.options.name}' {why}: the changes committed from LSN "
                   f"{lsn_text(lost_from)} to {lsn_text(lost_to)} ({lost_bytes} bytes of WAL) are lost; going on "
                   f"from {lsn_text(lost_to)}")
        logger.error("%s", warning)
        await self._set_state("behind_retention", slot=self.slot, warning=warning, lost_from=lsn_text(lost_from),
                              lost_to=lsn_text(lost_to), lost_wal_bytes=lost_bytes)

    async def _replace_slot_older_than_publication(self, conn, error: psycopg.OperationalError) -> None:
        """A slot that began before the publication was made cannot be decoded (every try fails on
        'publication does not exist'): it is made anew, and what it held said to be lost."""
        message = str(error)
        if "publication" not in message or "does not exist" not in message:
            return
        cursor = await self._bounded(conn, conn.execute(_PUBLICATION, [self.publication]))
        if not (await cursor.fetchone())[0]:
            return  # the publication is really gone: the next start says so
        info = await self._bounded(conn, slot_info(conn, self.slot))
        lost_from = max(self._received, parse_lsn(info.confirmed_lsn) if info and info.confirmed_lsn else 0)
        for _ in range(50):  # the walsender lets go of the slot a moment after the error
            try:
                await self._bounded(conn, drop_slot(conn, self.slot))
                break
            except errors.ObjectInUse:
                await asyncio.sleep(0.1)
        self._received = self._confirmed = self._last_commit = 0
        await self._bounded(conn, create_slot(conn, self.slot), self.options.query_timeout)
        await self._report_lost(conn, lost_from, "began before the publication (a switch of source without "
                                "`migrate`)")

    async def _replay_event_log(self, conn: psycopg.AsyncConnection) -> None:
        """Hand on what the change triggers logged after the name's event-log position (a NOTIFY
        listener's, before a switch to this source), once per process. The stream then skips those
        transactions (a transaction may be in both around the switch), and the position moves to
        now once the slot is confirmed past them (until then a restart replays the same events,
        with the same ids)."""
        if self._log_replayed:
            return
        log = EventLog(conn, guard=self._guard(conn))
        name = self.options.name
        position, _ = await log.load_position(name)
        current, _ = await log.current()
        if position is None:  # a new name: its position starts now (a switch to notify goes on from it)
            await log.start_position(name, current)
            self._log_replayed = True
            return
        pending = await log.count_pending(position, current)
        if pending:
            await self._set_state("replaying", events=pending, source="event log")
        handed = 0
        async for channel, payload in log.pending(position, current):
            notification = Notification(channel, payload, replayed=True)
            if notification.event is not None:
                self._logged_txids.add(notification.event["txid"])
            self.stats.record(notification)
            await self._hand_on(notification)
            handed += 1
        if handed:
            logger.info("handed on %d events of the event log (logged before the switch to the WAL source)", handed)
        cursor = await self._bounded(conn, conn.execute("SELECT pg_current_wal_insert_lsn()::text"))
        self._log_position = (current, parse_lsn((await cursor.fetchone())[0]))
        self._log_replayed = True

    async def _stream(self, conn: psycopg.AsyncConnection, receiver: NotificationReceiver,
                      wal_conn: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        cursor = await self._bounded(conn, conn.execute(_NEXT_XID))
        self._next_xid, current = await cursor.fetchone()
        catch_up_until = parse_lsn(current)
        self._note_cut_short()
        stream = ReplicationStream(wal_conn)
        # A slot still in use (ObjectInUse: the previous consumer is going away) is a recoverable
        # error: the session is retried after a short backoff.
        try:
            async with asyncio.timeout(self.options.heartbeat_timeout):
                await stream.start(self.slot, self.publication, self._received)
        except _SETUP_ERRORS as error:
            raise WalSetupError(f"cannot stream from slot {self.slot}: {one_line(error)}") from error
        info = await self._bounded(conn, slot_info(conn, self.slot))
        behind = max(0, catch_up_until - parse_lsn(info.confirmed_lsn)) if info and info.confirmed_lsn else 0
        live = behind == 0
        if live:
            await self._set_state("live")
        else:
            await self._set_state("replaying", wal_bytes=behind)
        await self._serve(conn, receiver, stream, stop, catch_up_until, live)
        await self._confirm(conn, stream)

    async def _serve(self, conn, receiver: NotificationReceiver, stream: ReplicationStream, stop: asyncio.Event,
                     catch_up_until: int, live: bool) -> None:
        options = self.options
        next_checkpoint = time.monotonic() + options.checkpoint_interval
        heard_at = time.monotonic()
        stream_fd, conn_fd = stream.pgconn.socket, conn.pgconn.socket
        transaction: _Transaction | None = None
        # The checkpoint runs beside the stream, which is read meanwhile (its queries, the live
        # streams' event log above all, took 25-40 ms a second at 1,000 changes/s: the p99 of a
        # change's latency). The normal connection is the checkpoint's until it is done: its
        # socket is not read here (two readers of one socket would steal each other's data).
        checkpoint: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                deadline = time.monotonic() + options.poll_interval
                if checkpoint is None:  # one that runs past the next one's time delays it: no spin meanwhile
                    deadline = min(deadline, next_checkpoint)
                while (remaining := deadline - time.monotonic()) > 0:
                    if checkpoint is not None and checkpoint.done():
                        checkpoint.result()  # its error ends the session, as it did inline
                        checkpoint = None
                    messages = stream.take()
                    if checkpoint is not None:
                        notes = []
                        if not messages:
                            if not await readable(remaining, stream_fd, until=checkpoint):
                                break
                            messages = stream.poll()
                    else:
                        notes = receiver.poll() if not messages else receiver.take()
                        if not messages and not notes:
                            if not await readable(remaining, stream_fd, conn_fd):
                                break
                            messages, notes = stream.poll(), receiver.poll()
                    received = now()
                    for channel, payload, pid in notes:
                        await self._pass_on(Notification(channel, payload, pid, received=received))
                    if messages:
                        heard_at = time.monotonic()
                        transaction = await self._decode(messages, transaction, catch_up_until, received, conn, stream)
                        if not live and transaction is None and self._received >= catch_up_until:
                            live = True
                            if checkpoint is not None:
                                await checkpoint
                                checkpoint = None
                            await self._confirm(conn, stream)  # the catch-up recorded, as the NOTIFY source does
                            await self._set_state("live")
                        if not notes and all(message[0] == _KEEPALIVE for message in messages):
                            await asyncio.sleep(KEEPALIVE_NAP)
                moment = time.monotonic()
                if moment >= next_checkpoint and checkpoint is None:
                    if (silent := moment - heard_at) > options.heartbeat_timeout + options.checkpoint_interval:
                        stream.pgconn.finish()
                        raise ConnectionDeadError(f"no message on the replication connection for {silent:.0f} s")
                    checkpoint = asyncio.create_task(self._checkpoint(conn, stream))
                    next_checkpoint = moment + options.checkpoint_interval
            if checkpoint is not None:
                await checkpoint
            if self.logged_models:
                await self._pass_a_last_mark(conn, stream, transaction, catch_up_until)
        finally:
            if checkpoint is not None:
                checkpoint.cancel()  # when the session ends with an error (its connections go); else done already

    async def _pass_a_last_mark(self, conn, stream: ReplicationStream, transaction: _Transaction | None,
                                catch_up_until: int) -> None:
        """At a stop: a checkpoint mark, and the stream read until it passes the mark (or a second
        went by), so that the last confirm moves the event log's position over the live streams'
        events handed on: a restart hands none on again."""
        mark, _ = await self._take_mark(conn)
        deadline = time.monotonic() + LAST_MARK_WAIT
        while self._received < mark and (remaining := deadline - time.monotonic()) > 0:
            stream.confirm(self._confirmed, reply=True)  # the server's keepalive says where it is
            messages = stream.take()
            if not messages and await readable(min(remaining, 0.1), stream.pgconn.socket):
                messages = stream.poll()
            if messages:
                transaction = await self._decode(messages, transaction, catch_up_until, now(), conn, stream)

    async def _decode(self, messages: list[bytes], transaction: _Transaction | None, catch_up_until: int,
                      received, conn, stream: ReplicationStream) -> _Transaction | None:
        relations = self._relations
        handle, record = self.sink.handle, self.stats.record
        logged = self.logged_models
        database, of_event = self._database, Notification.of_event
        for data in messages:
            if data[0] == 0x77 and data[25] == 0x49:  # XLogData of an Insert: the hot path, below
                lsn, oid = INSERT_HEAD.unpack_from(data, 1)
                message, op = None, "INSERT"
            else:
                lsn, message = parse_copy_data(data)
                if type(message) is Change:
                    oid, op = message.relation_oid, message.op
            if type(message) is Change or message is None:
                assert transaction is not None  # pgoutput sends changes between a Begin and its Commit
                if transaction.skip:
                    continue
                watched = relations.get(oid)
                if watched is None:
                    continue
                if watched.tags:
                    transaction.cache.setdefault((watched.name, op), watched.tags)
                shapes = watched.shapes
                if not shapes:
                    continue
                # Each target's event takes an id of its own (see changes.py).
                if lsn == self._change_lsn:
                    ordinal = self._next_ordinal
                else:
                    self._change_lsn, ordinal = lsn, 0
                self._next_ordinal = ordinal + len(shapes)
                if lsn + ordinal <= transaction.handed_on_until:
                    continue  # handed on before the connection was lost
                events: Sequence[dict | None]
                if message is not None:
                    events = _events(shapes, message, lsn + ordinal, transaction)
                else:
                    # An Insert, by the relation's own function (wal.inserts); a value the event
                    # carries as its JSON text, or anything unexpected, takes the general path,
                    # which makes the event, or the error.
                    assert watched.insert_events is not None  # a relation with shapes has one
                    try:
                        events = watched.insert_events(data, lsn + ordinal, transaction.ts, transaction.txid)
                    except ValueError:
                        _, change = parse_copy_data(data)
                        assert type(change) is Change
                        events = _events(shapes, change, lsn + ordinal, transaction)
                for event in events:
                    if event is not None:
                        if database is not None:
                            event["database"] = database
                        notification = of_event(event["channel"], event, received, transaction.replayed)
                        record(notification)
                        if logged and event["model"] in logged:
                            self._to_log.append((notification.channel, notification.payload))  # swapped by _confirm
                        self.handed_on += 1
                        try:  # _hand_on, inline: one coroutine less per change
                            await handle(notification)
                        except Exception:
                            logger.exception("the sink failed on a %s notification", notification.channel)
            elif type(message) is Begin:
                txid = full_xid(message.xid, self._next_xid)
                cut_lsn, handed_on_until = self._cut_short
                transaction = self._open = _Transaction(
                    message, txid, skip=message.commit_lsn <= self._last_commit or txid in self._logged_txids,
                    replayed=message.commit_lsn < catch_up_until,
                    handed_on_until=handed_on_until if message.commit_lsn == cut_lsn else -1)
                self._change_lsn = 0  # ordinals count within the transaction: the same ids when it comes again
            elif type(message) is Commit:
                assert transaction is not None
                if not transaction.skip:
                    for (table_name, op), tags in transaction.cache.items():
                        notification = _cache_notification(table_name, op, tags, received, transaction.replayed)
                        record(notification)
                        await self._hand_on(notification)
                    self._last_commit = transaction.commit_lsn
                self._received = max(self._received, message.end_lsn)
                transaction = self._open = None
            elif type(message) is Relation:
                relations[message.oid] = await self._watched(message, conn)
            elif type(message) is Keepalive:
                if transaction is None:  # between transactions: everything before it was sent
                    self._received = max(self._received, message.wal_end)
                if message.reply:
                    stream.confirm(self._confirmed)
            elif type(message) is Truncate:
                assert transaction is not None
                if not transaction.skip:
                    for oid in message.relation_oids:
                        if (watched := relations.get(oid)) is not None and watched.tags:
                            transaction.cache.setdefault((watched.name, "TRUNCATE"), watched.tags)
        return transaction

    def _note_cut_short(self) -> None:
        """Before streaming again: remember how far the transaction a lost connection cut short
        was handed on, for the server sends it again from its Begin."""
        cut = self._open
        self._open = None
        if cut is None or cut.skip:
            return
        handed_on_until = self._change_lsn + self._next_ordinal - 1 if self._change_lsn else -1
        self._cut_short = (cut.commit_lsn, max(handed_on_until, cut.handed_on_until))

    async def _pass_on(self, notification: Notification) -> None:
        """A notification that came by LISTEN: passed on as it is."""
        if notification.channel == SYSTEM and notification.pid in self._own_pids:
            return  # our own state notice, already handed on locally
        if notification.event is not None and notification.channel in self._channels:
            # A change trigger left on a watched table: its events come by the WAL already.
            self._leftover_triggers += 1
            if self._leftover_triggers == 1:
                logger.warning("a change trigger still notifies on %s: run `manage.py migrate` with "
                               "PGNOTIFY['SOURCE'] = 'wal' to remove it (its events are ignored)",
                               notification.channel)
            return
        self.stats.record(notification)
        await self._hand_on(notification)

    # -- relations and types

    def _table_of(self, relation: Relation) -> WalTable | None:
        """The table of the settings this relation is: named with its schema, or by its name alone
        (the publication holds the one the search path finds). A partition's changes come as its
        partitioned table's (publish_via_partition_root)."""
        named = [t for t in self.tables if t.name == relation.name and t.schema in ("", relation.schema)]
        return next((t for t in named if t.schema), named[0] if named else None)

    async def _watched(self, relation: Relation, conn) -> Watched | None:
        table = self._table_of(relation)
        if table is None:
            return None
        shapes: tuple[Shape, ...] = ()
        if table.targets:
            cursor = await self._bounded(conn, conn.execute(_RELATION_FACTS,
                                                              {"name": relation.name, "oid": relation.oid}))
            found, unique_keys = await cursor.fetchone()
            display = relation.name if found else f"{relation.schema}.{relation.name}"
            pair = pairing_key(table.key, json.loads(unique_keys))
            converters = [await self._converter(column.type_oid, conn) for column in relation.columns]
            shapes = tuple(Shape.of(relation, target, display, table.key, converters, pair)
                           for target in table.targets)
            return Watched(relation.name, shapes, table.tags, insert_events(shapes))
        return Watched(relation.name, shapes, table.tags)

    async def _converter(self, oid: int, conn) -> Convert:
        """How to_jsonb renders a type: its category, through domains and arrays."""
        if (known := self._types.get(oid)) is not None:
            return known
        cursor = await conn.execute(_TYPE, [oid])
        row = await cursor.fetchone()
        converter: Convert = as_text
        if row is not None:
            typtype, category, element, base, delimiter = row
            if typtype == "d":
                converter = await self._converter(base, conn)
            elif category == "A" and element:
                converter = array_of(await self._converter(element, conn), delimiter)
        self._types[oid] = converter
        return converter

    # -- position

    async def _take_mark(self, conn: psycopg.AsyncConnection) -> tuple[int, int]:
        """A checkpoint mark (a snapshot and the WAL insert position after it, _MARK), kept until the
        stream passes it; returns its position and the server's current WAL position."""
        cursor = await self._bounded(conn, conn.execute(_MARK))
        self._next_xid, current, snapshot, inserted = await cursor.fetchone()
        mark = parse_lsn(inserted)
        self._marks.append((mark, snapshot))
        return mark, parse_lsn(current)

    async def _checkpoint(self, conn: psycopg.AsyncConnection, stream: ReplicationStream) -> None:
        _, current = await self._take_mark(conn)
        self._server_marks.append((current, time.monotonic()))
        await self._confirm(conn, stream)
        self._note_slot(await self._bounded(conn, slot_info(conn, self.slot)))
        # The event log holds what a NOTIFY source logged before the switch and the live streams'
        # events: both age out.
        await self._upkeep(EventLog(conn, guard=self._guard(conn)), time.monotonic())

    async def _warn_about_partitions(self, log: EventLog) -> None:
        conn = log.connection
        for partition, table in await self._bounded(conn, partitions_without_full_identity(conn, self.publication)):
            logger.warning("partition %s of watched table %s lacks replica identity FULL: its UPDATEs and "
                               "DELETEs come without the old row (no `changed`, a DELETE's row holds only the key) "
                               "until `manage.py migrate` sets it", partition, table)

    async def _confirm(self, conn: psycopg.AsyncConnection, stream: ReplicationStream) -> None:
        """Flush the sink, then confirm what it has taken; a status update in any case (asking
        for a reply: the replication connection's heartbeat)."""
        moment = time.monotonic()
        # What is confirmed is what the stream had passed by now: the stream is read on while this
        # runs (_serve), and the events to log are those handed on until now, or more.
        received, to_log = self._received, self._to_log
        self._to_log = []
        checkpoint = self._passed_mark(received)
        if received > self._confirmed or checkpoint is not None:
            try:  # the log before the slot is confirmed: a crash repeats, never loses
                wrote = await self._write_log(conn, to_log)
            except BaseException:
                self._to_log[:0] = to_log  # written by the next checkpoint
                raise
            if checkpoint is not None:
                self.checkpoint = checkpoint  # the sink sends it behind the events it covers
            if await self._sink_has_taken_everything():  # else the old position holds
                self._confirmed = max(self._confirmed, received)
                if moment - self._saved_at >= self.options.position_save_interval:
                    await self._bounded(conn, save_position(conn, self.slot, lsn_text(self._confirmed)))
                    self._saved_at = moment
                if self._log_position is not None and self._confirmed >= self._log_position[1]:
                    # Every transaction the event-log replay covered is behind the slot now.
                    await EventLog(conn, guard=self._guard(conn)).save_position(self.options.name,
                                                                                self._log_position[0])
                    self._log_position, self._logged_txids = None, set()
                elif self._log_position is None and checkpoint is not None and self._logged_since_saved:
                    # The name's event-log position follows the stream over the live streams' events
                    # this listener logged: the next start does not replay them as logged before a
                    # switch to this source, nor does a switch to the NOTIFY source. The snapshot was
                    # taken before this checkpoint's write: the next one saves again after one.
                    await EventLog(conn, guard=self._guard(conn)).save_position(self.options.name,
                                                                                Snapshot.parse(checkpoint))
                    self._logged_since_saved = wrote
        while self._server_marks and self._server_marks[0][0] <= self._confirmed:
            self._server_marks.popleft()
        stream.confirm(self._confirmed, reply=True)

    def _passed_mark(self, received: int) -> str | None:
        """The newest checkpoint snapshot S every transaction of which has been handed on.

        S was read before the WAL insert position W (_MARK). A transaction S sees left the
        server's list of running transactions before S was taken, and it wrote its commit record
        before that: the record ends at or before W. The stream sends transactions whole in the
        order of their commit records, so once it has passed W (`_received`: a commit's end, or a
        keepalive's between transactions) each of them has been handed on. Others may have been
        too (committed after S, before W): a live position is S plus the events applied since
        that S does not see, as under the NOTIFY source."""
        passed = None
        while self._marks and self._marks[0][0] <= received:
            passed = self._marks.popleft()[1]
        return passed

    async def _write_log(self, conn: psycopg.AsyncConnection, to_log: list[tuple[str, str]]) -> bool:
        """The stream models' events handed on since the last checkpoint, into the event log in
        one statement (ids are the WAL ids: one sent again after a restart is not written twice).
        False when there were none."""
        if not to_log:
            return False
        channels, payloads = zip(*to_log, strict=True)
        await self._bounded(conn, conn.execute(_LOG, ["[" + ",".join(payloads) + "]", list(channels)]),
                              self.options.query_timeout)
        self._logged_since_saved = True
        return True

    def held_back_s(self) -> float:
        """Seconds since the server was at a WAL position the listener's position does not cover yet."""
        return time.monotonic() - self._server_marks[0][1] if self._server_marks else 0.0

    def _note_slot(self, info: SlotInfo | None) -> None:
        if info is None:
            return
        self.stats.wal = {**info.as_dict(), "confirmed_lsn": lsn_text(self._confirmed),
                          "confirmed_age_s": round(self.held_back_s(), 1)}
        if info.wal_status == "unreserved":  # the next checkpoint may invalidate it
            logger.error("replication slot %s retains more WAL than max_slot_wal_keep_size: the next checkpoint may "
                         "invalidate it and lose changes (docs/sources.md: sizing the limit)", self.slot)
        retained = info.retained_bytes or 0
        if retained > self.retained_warning and not self._warned_retained:
            logger.warning("replication slot %s retains %d MB of WAL (more than %d MB): the listener is not "
                           "keeping up", self.slot, retained >> 20, self.retained_warning >> 20)
            self._warned_retained = True
        elif retained <= self.retained_warning and self._warned_retained:
            logger.info("replication slot %s retains %d MB of WAL again", self.slot, retained >> 20)
            self._warned_retained = False


def _events(shapes: tuple[Shape, ...], change: Change, first_id: int, transaction: _Transaction) -> list[dict | None]:
    """A change's event for each target, by the general path (None: an UPDATE it sends none for)."""
    events = []
    for shape in shapes:
        events.append(shape.event(change, first_id, transaction.ts, transaction.txid))
        first_id += 1
    return events


def _cache_notification(table: str, op: str, tags: tuple[str, ...], received, replayed: bool) -> Notification:
    """What the cache trigger sends on cache_invalidate, for a table a transaction changed."""
    payload = json.dumps({"op": op, "tags": list(tags), "table": table})
    return Notification(CACHE_INVALIDATE, payload, received=received, replayed=replayed)
