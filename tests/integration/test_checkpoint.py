"""The live checkpoint (pgnotify.listener): a snapshot with a marker notification queued behind
it; the position moves to the snapshot when the marker comes back, and from the event log when
it does not come back in time."""

import asyncio
import uuid

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.exceptions import CannotListenError
from pgnotify.listener import Listener, ListenerOptions, base
from pgnotify.listener.receiving import NotificationReceiver
from pgnotify.listener.snapshots import Snapshot
from tests.helpers.faults import RecordingSink
from tests.helpers.waiting import eventually_async


async def recorded_position(conn, name: str) -> Snapshot | None:
    row = await (await conn.execute("SELECT snapshot FROM pgnotify_listener WHERE name = %s", [name])).fetchone()
    return Snapshot.parse(row[0]) if row else None


async def until_position_covers(conn, name: str, txid: int, within: float = 10.0) -> None:
    async def covered():
        position = await recorded_position(conn, name)
        return position is not None and position.sees(txid)

    await eventually_async(covered, within, what=f"the position of {name} to cover txid {txid}")


class Running:
    """A Listener task for the length of a with block."""

    def __init__(self, listener: Listener):
        self.listener, self.stop = listener, asyncio.Event()

    async def __aenter__(self):
        self.task = asyncio.create_task(self.listener.run(self.stop))
        return self.listener

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


class MarkerDeafListener(Listener):
    """A listener that never hears its markers, as if they were lost on the way."""

    async def _listen(self, conn):
        await super()._listen(conn)
        await conn.execute(f"UNLISTEN {self._mark_channel}")


@pytest.mark.django_db(transaction=True)
async def test_a_flood_is_handed_on_live_while_markers_move_the_position():
    """20,000 notifications of one transaction, markers every 20 ms: were the position moved before
    the events ahead of its marker arrived, those would be dropped as already covered."""
    conninfo = listener_conninfo()
    name = f"marker-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    options = ListenerOptions(channels=["orders"], name=name, checkpoint_interval=0.02)
    async with Running(Listener(conninfo, options, sink)), \
            await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
        await sink.wait_for(lambda: "live" in sink.states())
        async with conn.transaction():
            cursor = conn.cursor()
            await cursor.executemany("INSERT INTO shop_order (quantity) VALUES (%s)", [(i,) for i in range(20_000)])
            txid = int((await (await conn.execute("SELECT pg_current_xact_id()::text")).fetchone())[0])
        await sink.wait_for(lambda: len(sink.events()) >= 20_000, 60)
        await until_position_covers(conn, name, txid)

    ids = [n.event["id"] for n in sink.events()]
    assert len(ids) == len(set(ids)) == 20_000
    assert ids == sorted(ids)
    assert not any(n.replayed for n in sink.events()), "every event came live, none from the log"
    assert not any(n.channel.startswith("pgnotify_checkpoint_") for n in sink.notifications)


@pytest.mark.django_db(transaction=True)
async def test_a_marker_that_does_not_come_back_falls_back_to_the_event_log():
    conninfo = listener_conninfo()
    name = f"deaf-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    options = ListenerOptions(channels=["orders"], name=name, checkpoint_interval=0.1, position_save_interval=1.0)
    async with Running(MarkerDeafListener(conninfo, options, sink)), \
            await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
        await sink.wait_for(lambda: "live" in sink.states())
        started = await recorded_position(conn, name)
        cursor = await conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING pg_current_xact_id()::text")
        txid = int((await cursor.fetchone())[0])
        await sink.wait_for(lambda: len(sink.events()) == 1)
        assert not started.sees(txid)
        # No marker ever comes back; the overdue one (1 s) sends the listener to the log, and on.
        await until_position_covers(conn, name, txid, within=5.0)

    assert len(sink.events()) == 1 and not sink.events()[0].replayed


class OthersDeafReceiver(NotificationReceiver):
    """Hears only what its own session sends: as behind a transaction pooler, whose server session
    hands a client its own notifications and drops every other session's."""

    def _take(self):
        own = self.pgconn.backend_pid
        return [n for n in super()._take() if n[2] == own]


class UnprovenListener(Listener):
    """Skips the proof at start, as if the session stopped hearing other sessions after it."""

    async def _prove_listening(self, *args) -> None:
        pass


@pytest.mark.django_db(transaction=True)
async def test_the_position_never_moves_over_an_event_not_handed_on(monkeypatch):
    """The marker comes back by the way other sessions' notifications come: a session that hears
    only itself moves the position from the event log, handing on what it missed, never by a marker."""
    monkeypatch.setattr(base, "NotificationReceiver", OthersDeafReceiver)
    conninfo = listener_conninfo()
    name = f"self-only-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    options = ListenerOptions(channels=["orders"], name=name, checkpoint_interval=0.1, position_save_interval=1.0)
    async with Running(UnprovenListener(conninfo, options, sink)), \
            await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
        await sink.wait_for(lambda: "live" in sink.states())
        cursor = await conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING pg_current_xact_id()::text")
        txid = int((await cursor.fetchone())[0])
        await until_position_covers(conn, name, txid, within=5.0)
        handed_on = [n.event["txid"] for n in sink.events()]

    assert handed_on == [txid], "the position covers a change that was never handed on"
    assert sink.events()[0].replayed


@pytest.mark.django_db(transaction=True)
async def test_a_session_that_hears_only_itself_is_refused_at_start(monkeypatch):
    monkeypatch.setattr(base, "NotificationReceiver", OthersDeafReceiver)
    options = ListenerOptions(channels=["orders"], name=f"deaf-{uuid.uuid4().hex[:8]}", heartbeat_timeout=1.0)
    sink = RecordingSink()
    with pytest.raises(CannotListenError, match=r'PGNOTIFY\["DIRECT"\]'):
        await asyncio.wait_for(Listener(listener_conninfo(), options, sink).run(asyncio.Event()), 10)
    assert "live" not in sink.states() and "connected" not in sink.states()
