"""Live frames under a real daphne go straight to each socket (pgnotify.web.daphne), as the
dashboards' do: a client that stops reading while megabytes of snapshot and changes are written to
it still gets every frame whole and in order, and its view equals a fresh snapshot."""

import asyncio

import pytest

from notifyproject.shop.models import Order
from tests.helpers.live import LiveSocket, db, order_rows, same_rows, session_cookie
from tests.helpers.web import WebStack

pytestmark = pytest.mark.django_db(transaction=True)
SNAPSHOT_ROWS, CHANGES = 20_000, 300  # about 3 MB of snapshot: more than the kernel's buffers hold


def write_changes(customer_id: int, pks: list[int]) -> None:
    for number in range(CHANGES):
        if number % 3 == 2:
            Order.objects.filter(pk=pks[number]).update(status="paid")
        else:
            Order.objects.create(customer_id=customer_id, status="new", quantity=number + 1, total="2.50")


def test_a_client_that_stops_reading_gets_every_frame_in_order():
    stack = WebStack("redis").start()
    try:
        alice, cookie = session_cookie("alice")
        pks = [order.pk for order in Order.objects.bulk_create(
            Order(customer_id=alice, status="new", quantity=1, total="1.00") for _ in range(SNAPSHOT_ROWS))]

        async def run():
            socket = await LiveSocket.connect(stack.daphne.port, cookie)
            view = await socket.subscribe("all", wait_snapshot=False)
            # Nothing is read while the snapshot and the changes are written: the client's buffers
            # fill, the server's socket takes no more, and the rest waits in daphne's transport.
            await db(write_changes, alice, pks)
            expected = await db(order_rows, alice)
            await socket.until(lambda: view.done and same_rows(view, expected), wait=60)
            await socket.close()
            return view

        view = asyncio.run(run())
        # (the view refuses a repeated INSERT and an UPDATE of a row it lacks; changes committed
        # before the snapshot was read are in it, not in change frames)
        assert 0 < len([frame for frame in view.frames if frame["type"] == "change"]) <= CHANGES
        assert any("daphne fast path" in line and "off" not in line for line in stack.daphne.lines), \
            stack.daphne.lines
        assert not [line for line in stack.daphne.lines if "Traceback" in line or "ERROR" in line]
    finally:
        stack.stop()
