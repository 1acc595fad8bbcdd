"""Positions and resume on /ws/live/: a client that comes back with its last position gets what
it missed, in order, with no snapshot and no repeat; across a listener restart and a daphne
restart; a position older than RETENTION gets a resync and a fresh snapshot. Each under both
event sources (under the WAL source the listener writes the streams' events to the event log)."""

import asyncio
import base64
import json

import pytest

from notifyproject.shop.models import Order
from tests.helpers.live import LiveSocket, View, db, order_rows, same_rows, session_cookie
from tests.helpers.support import start_listener
from tests.helpers.web import WebStack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack(event_source):
    stack = WebStack("postgres", source=event_source).start()
    yield stack
    stack.stop()


def create(customer_id, status="new"):
    return Order.objects.create(customer_id=customer_id, status=status).pk


def update(pk, **values):
    return Order.objects.filter(pk=pk).update(**values)


def delete(pk):
    return Order.objects.filter(pk=pk).delete()


async def missed_writes(alice, bob, orders):
    """Changes made while the client is away: each kind of change of the view, and some not of it."""
    await db(update, orders[0], status="paid")  # UPDATE
    await db(update, orders[1], customer_id=bob)  # leaves
    await db(delete, orders[2])  # DELETE
    await db(create, bob)  # not of the view
    new = await db(create, alice, "paid")  # INSERT
    await db(update, orders[3], status="shipped")  # UPDATE (leaves the paid filter)
    return new


async def resume(port, cookie, view: View, sub_id="all", **extra) -> LiveSocket:
    socket = await LiveSocket.connect(port, cookie)
    socket.views[sub_id] = view
    await socket.socket.send_json({"type": "subscribe", "id": sub_id, "stream": "my-orders",
                                   "after": view.position, **extra})
    return socket


def test_resume_sends_what_was_missed_and_nothing_twice(stack):
    alice, cookie = session_cookie("alice")
    bob, _ = session_cookie("bob")
    orders = [create(alice) for _ in range(5)]

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        view = await s.subscribe("all")
        await db(update, orders[4], quantity=7)
        await s.until(lambda: view.rows[orders[4]]["quantity"] == 7)
        await s.close()
        frames_before = len(view.frames)

        new = await missed_writes(alice, bob, orders)
        s = await resume(stack.daphne.port, cookie, view)
        await s.until(lambda: new in view.rows and view.rows[orders[3]]["status"] == "shipped")
        missed = view.frames[frames_before:]
        assert all(f["type"] == "change" for f in missed), missed  # no snapshot, no resync
        assert [(f["op"], f["row"]["id"]) for f in missed] == [
            ("UPDATE", orders[0]), ("DELETE", orders[1]), ("DELETE", orders[2]), ("INSERT", new),
            ("UPDATE", orders[3])]
        assert same_rows(view, await db(order_rows, alice))
        # then live, on the resumed subscription
        await db(update, orders[4], quantity=8)
        await s.until(lambda: view.rows[orders[4]]["quantity"] == 8)
        await s.close()
        assert not s.errors

    asyncio.run(run())


def test_resume_across_a_listener_restart_and_a_daphne_restart(stack):
    alice, cookie = session_cookie("gina")
    bob, _ = session_cookie("hank")
    orders = [create(alice) for _ in range(5)]

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        view = await s.subscribe("all")
        await s.close()
        stack.listener.stop()
        stack.restart_daphne()
        new = await missed_writes(alice, bob, orders)
        # The same listener again (under the WAL source its slot holds what was written meanwhile).
        stack.listener = await asyncio.to_thread(start_listener, "--name", stack.listener_name, env=stack.env)
        s = await resume(stack.daphne.port, cookie, view)
        await s.until(lambda: new in view.rows and view.rows[orders[3]]["status"] == "shipped")
        assert same_rows(view, await db(order_rows, alice))
        assert all(f["type"] in ("snapshot", "change") for f in view.frames)
        assert sum(f["type"] == "snapshot" for f in view.frames) == 1  # the first one only
        later = await db(create, alice)
        await s.until(lambda: later in view.rows)  # live again through the new listener
        await s.close()

    asyncio.run(run())


def aged(position: str, seconds: float) -> str:
    data = json.loads(base64.urlsafe_b64decode(position + "=" * (-len(position) % 4)))
    data["t"] -= seconds
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_position_older_than_retention_gets_resync_and_a_fresh_snapshot(stack):
    alice, cookie = session_cookie("ivy")
    orders = [create(alice) for _ in range(3)]

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        view = await s.subscribe("all")
        await s.close()
        await db(delete, orders[0])
        view.position = aged(view.position, 24 * 3600 + 60)
        s = await resume(stack.daphne.port, cookie, view)
        first = len(view.frames)
        await s.until(lambda: len(view.frames) > first and view.done)
        kinds = [f["type"] for f in view.frames[first:]]
        assert kinds == ["resync", "snapshot"], kinds
        assert same_rows(view, await db(order_rows, alice))
        await s.close()

    asyncio.run(run())


def applied_ids(position: str) -> list:
    return json.loads(base64.urlsafe_b64decode(position + "=" * (-len(position) % 4)))["x"]


def test_positions_move_to_the_listeners_checkpoints(stack):
    """A position is a checkpoint snapshot plus the events applied since: it stays small, because
    the listener's checkpoints (each second, behind the events they cover) reach the subscription."""
    alice, cookie = session_cookie("jill")
    order = create(alice)

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        view = await s.subscribe("all")
        first = None
        async with asyncio.timeout(20):
            for quantity in range(2, 1000):  # one change at a time, until a checkpoint covers the first
                await db(update, order, quantity=quantity)
                await s.until(lambda q=quantity: view.rows[order]["quantity"] == q)
                applied = applied_ids(view.position)
                first = first or applied[0]
                if first not in applied:
                    break
                await asyncio.sleep(0.2)  # a pace, not a wait for something: checkpoints come each second
        await s.close()

    asyncio.run(run())
