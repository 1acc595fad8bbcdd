"""Group messages the channel layer drops (a stalled process, a channel over its capacity) never
leave a live view silently behind: the process sees the gap in the sender's sequence and every
live subscription gets a resync and a fresh snapshot (docs/live.md, "When messages are lost")."""

import asyncio
import os
import signal
import time

import pytest
from django.db import connection

from notifyproject.shop.models import Order
from pgnotify.listener.snapshots import Snapshot
from pgnotify.models import ListenerPosition
from pgnotify.web.live.positions import includes
from tests.live import LiveSocket, db, order_rows, same_rows, session_cookie
from tests.web import WebStack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
CAPACITY = 2  # messages the process's channel holds while it is stalled; the rest are dropped


@pytest.fixture
def stack():
    stack = WebStack("redis")
    stack.env["CHANNEL_LAYER_CAPACITY"] = str(CAPACITY)
    stack.start()
    yield stack
    stack.stop()


def current_snapshot() -> Snapshot:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        return Snapshot.parse(cursor.fetchone()[0])


def handed_on(name: str, snapshot: Snapshot) -> bool:
    """The listener has sent every event `snapshot` sees (it records its position after sending)."""
    position = ListenerPosition.objects.filter(name=name).values_list("snapshot", flat=True).first()
    return position is not None and includes(Snapshot.parse(position), snapshot)


def writes(customer_id: int, pks: list[int], rounds: int) -> None:
    """One transaction each: updates of the user's rows and new rows, so that many group messages go out."""
    for number in range(rounds):
        if number % 3 == 2:
            Order.objects.create(customer_id=customer_id, status="new", quantity=number)
        else:
            Order.objects.filter(pk=pks[number % len(pks)]).update(quantity=1000 + number)


def test_messages_dropped_while_the_process_stalls_end_in_a_resync_not_a_silent_gap(stack):
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
            written = await db(current_snapshot)
            deadline = time.monotonic() + 20
            while not await db(handed_on, stack.listener_name, written):
                assert time.monotonic() < deadline, "the listener did not hand the writes on"
                await asyncio.sleep(0.05)  # polling the listener's recorded position
        finally:
            os.kill(stack.daphne.proc.pid, signal.SIGCONT)
        marker = await db(Order.objects.create, customer_id=alice, status="paid", quantity=7)
        expected_all, expected_paid = await db(order_rows, alice), await db(order_rows, alice, status="paid")
        await socket.until(lambda: marker.pk in mine.rows and marker.pk in paid.rows and mine.done and paid.done,
                           wait=20)
        await socket.until(lambda: same_rows(mine, expected_all) and same_rows(paid, expected_paid), wait=10)
        assert any(frame["type"] == "resync" for frame in mine.frames)
        assert any(frame["type"] == "resync" for frame in paid.frames)
        assert not socket.errors
        await socket.close()

    asyncio.run(run())
    assert any("missed" in line for line in stack.daphne.lines), stack.daphne.lines[-20:]
