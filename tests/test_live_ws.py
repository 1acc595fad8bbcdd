"""/ws/live/ on a real daphne and a real listener: snapshot then changes, views per user and
filter, rows entering and leaving a view, limits and refusals (docs/live.md)."""

import asyncio

import pytest
from django.contrib.auth import get_user_model

from notifyproject.shop.models import Order
from tests.live import LiveSocket, db, order_rows, same_rows, session_cookie
from tests.web import WebStack
from tests.wsclient import Refused, WebSocket

pytestmark = pytest.mark.django_db(transaction=True)
FIELDS = {"id", "number", "status", "quantity", "total", "created_at"}


@pytest.fixture
def stack():
    stack = WebStack("postgres").start()
    yield stack
    stack.stop()


def make_orders(customer_id, count, status="new"):
    return [Order.objects.create(customer_id=customer_id, status=status, quantity=i + 1, total="12345678.91"
                                 if i == 0 else "1.00").pk for i in range(count)]


def update(pk, **values):
    return Order.objects.filter(pk=pk).update(**values)


def test_each_user_gets_their_own_rows_then_their_changes(stack):
    alice, alice_cookie = session_cookie("alice")
    bob, bob_cookie = session_cookie("bob")
    alice_orders = make_orders(alice, 3)
    make_orders(bob, 2)

    async def run():
        a = await LiveSocket.connect(stack.daphne.port, alice_cookie)
        b = await LiveSocket.connect(stack.daphne.port, bob_cookie)
        mine = await a.subscribe("all")
        paid = await a.subscribe("paid", filter={"status": "paid"})
        bobs = await b.subscribe("all")
        assert set(mine.rows) == set(alice_orders) and paid.rows == {}
        assert all(set(row) == FIELDS for row in mine.rows.values())
        first = mine.frames[0]
        assert first["type"] == "snapshot" and first["position"] and first["done"] is True

        await db(update, alice_orders[0], status="paid")  # enters the filtered view
        await a.until(lambda: alice_orders[0] in paid.rows and mine.rows[alice_orders[0]]["status"] == "paid")
        assert [f["op"] for f in paid.frames if f["type"] == "change"] == ["INSERT"]
        assert [f["op"] for f in mine.frames if f["type"] == "change"] == ["UPDATE"]

        await db(update, alice_orders[0], status="shipped")  # leaves the filtered view
        await a.until(lambda: alice_orders[0] not in paid.rows)
        assert paid.frames[-1]["op"] == "DELETE" and paid.frames[-1]["row"]["id"] == alice_orders[0]

        await db(update, alice_orders[1], customer_id=bob)  # leaves alice's view, enters bob's
        await a.until(lambda: alice_orders[1] not in mine.rows)
        await b.until(lambda: alice_orders[1] in bobs.rows)
        assert bobs.frames[-1]["op"] == "INSERT"

        new = (await db(make_orders, alice, 1))[0]
        await a.until(lambda: new in mine.rows)
        await db(lambda: Order.objects.filter(pk=new).delete())
        await a.until(lambda: new not in mine.rows)

        assert same_rows(mine, await db(order_rows, alice)) and same_rows(bobs, await db(order_rows, bob))
        assert not a.errors and not b.errors
        # bob's socket never carried one of alice's rows, nor alice's one of bob's beyond the one she gave away
        assert all(f["row"]["id"] not in alice_orders or f["row"]["id"] == alice_orders[1]
                   for f in bobs.frames if f["type"] == "change")
        await a.close()
        await b.close()

    asyncio.run(run())
