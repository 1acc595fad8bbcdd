"""Group messages the channel layer drops (a stalled process, a channel over its capacity) never
leave a live view silently behind: the process sees the gap in the sender's sequence and every
live subscription catches up from the event log (docs/live.md, "When messages are lost")."""

import asyncio
import os
import signal

import pytest
from django.db import connection

from notifyproject.shop.models import Order
from pgnotify.listener.snapshots import Snapshot
from pgnotify.models import ListenerPosition
from pgnotify.web.live.positions import includes
from tests.helpers.live import LiveSocket, db, order_rows, same_rows, session_cookie
from tests.helpers.waiting import eventually_async
from tests.helpers.web import WebStack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
CAPACITY = 2  # messages the process's channel holds while it is stalled; the rest are dropped


@pytest.fixture
def stack(event_source):
    stack = WebStack("redis", source=event_source)
    stack.env["CHANNEL_LAYER_CAPACITY"] = str(CAPACITY)
    stack.env["CHANNEL_LAYER_FANOUT_CAPACITY"] = str(CAPACITY)
    stack.start()
    yield stack
    stack.stop()


def written_now() -> tuple[Snapshot, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text, pg_current_wal_lsn()::text")
        snapshot, lsn = cursor.fetchone()
    return Snapshot.parse(snapshot), lsn


def handed_on(name: str, written: tuple[Snapshot, str]) -> bool:
    """The listener has sent every event written by then: it records its position (NOTIFY source)
    or confirms its slot (WAL source) after sending."""
    position = ListenerPosition.objects.filter(name=name).values_list("snapshot", flat=True).first()
    if position is not None and includes(Snapshot.parse(position), written[0]):
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT bool_or(confirmed_flush_lsn >= %s::pg_lsn) FROM pg_replication_slots"
                       " WHERE database = current_database() AND active", [written[1]])
        return bool(cursor.fetchone()[0])


def writes(customer_id: int, pks: list[int], rounds: int) -> None:
    """One transaction each: updates of the user's rows and new rows, so that many group messages go out."""
    for number in range(rounds):
        if number % 3 == 2:
            Order.objects.create(customer_id=customer_id, status="new", quantity=number)
        else:
            Order.objects.filter(pk=pks[number % len(pks)]).update(quantity=1000 + number)


@pytest.mark.parametrize("event_source", ["notify", "wal"], indirect=True)
def test_messages_dropped_while_the_process_stalls_are_caught_up_not_silently_missed(stack, event_source):
    alice, cookie = session_cookie("alice")
    pks = [Order.objects.create(customer_id=alice, status="new", quantity=1).pk for _ in range(5)]

    async def run():
        socket = await LiveSocket.connect(stack.daphne.port, cookie)
        mine = await socket.subscribe("all")
        paid = await socket.subscribe("paid", filter={"status": "paid"})
        os.kill(stack.daphne.proc.pid, signal.SIGSTOP)  # the process stalls: its channel fills up
        try:
            await db(writes, alice, pks, 60)
            await db(Order.objects.filter(pk=pks[0]).update, status="paid")
            written = await db(written_now)
            await eventually_async(lambda: db(handed_on, stack.listener_name, written), 20,
                                   "the listener to hand the writes on")  # its recorded position
        finally:
            os.kill(stack.daphne.proc.pid, signal.SIGCONT)
        marker = await db(Order.objects.create, customer_id=alice, status="paid", quantity=7)
        expected_all, expected_paid = await db(order_rows, alice), await db(order_rows, alice, status="paid")
        await socket.until(lambda: marker.pk in mine.rows and marker.pk in paid.rows and mine.done and paid.done,
                           wait=20)
        await socket.until(lambda: same_rows(mine, expected_all) and same_rows(paid, expected_paid), wait=10)
        resyncs = [frame for frame in mine.frames + paid.frames if frame["type"] == "resync"]
        if event_source == "notify":  # caught up from the event log: the missed changes came as changes
            assert not resyncs
            assert any(frame["type"] == "change" and frame["row"]["quantity"] == 1058 for frame in mine.frames)
        else:  # the WAL source's log lags the server: a resync and a fresh snapshot each
            assert {frame["id"] for frame in resyncs} == {"all", "paid"}
        assert not socket.errors
        await socket.close()

    asyncio.run(run())
    assert any("missed" in line for line in stack.daphne.lines), stack.daphne.lines[-20:]


@pytest.fixture
def roomy_stack():
    """Every channel holds CAPACITY messages, except the process's fan-out channel (its default)."""
    stack = WebStack("redis", source="notify")
    stack.env["CHANNEL_LAYER_CAPACITY"] = str(CAPACITY)
    stack.start()
    yield stack
    stack.stop()


def test_the_fan_out_channel_outlasts_a_stall_that_overflows_a_consumer_channel(roomy_stack):
    """A consumer channel's capacity is meant for one socket: the process's fan-out channel holds
    what a stall of the whole process lets pile up, so no view has to catch up."""
    stack = roomy_stack
    alice, cookie = session_cookie("alice")
    pks = [Order.objects.create(customer_id=alice, status="new", quantity=1).pk for _ in range(5)]

    async def run():
        socket = await LiveSocket.connect(stack.daphne.port, cookie)
        mine = await socket.subscribe("all")
        os.kill(stack.daphne.proc.pid, signal.SIGSTOP)
        try:
            await db(writes, alice, pks, 60)
            written = await db(written_now)
            await eventually_async(lambda: db(handed_on, stack.listener_name, written), 20,
                                   "the listener to hand the writes on")  # its recorded position
        finally:
            os.kill(stack.daphne.proc.pid, signal.SIGCONT)
        marker = await db(Order.objects.create, customer_id=alice, status="paid", quantity=7)
        expected = await db(order_rows, alice)
        await socket.until(lambda: marker.pk in mine.rows and same_rows(mine, expected), wait=20)
        changes = [frame for frame in mine.frames if frame["type"] == "change"]
        assert len(changes) == 61, len(changes)  # the 60 writes and the marker, each once
        assert not [frame for frame in mine.frames if frame["type"] == "resync"]
        await socket.close()

    asyncio.run(run())
    assert not any("missed" in line for line in stack.daphne.lines), stack.daphne.lines[-20:]
