"""/live/<stream>/ as Server-Sent Events on a real daphne and listener: the same frames as the
websocket, `id:` the position, Last-Event-ID resumes; refusals are plain HTTP errors."""

import asyncio
import json
import urllib.parse

import pytest

from notifyproject.shop.models import Order
from tests.helpers.live import EventStream, View, db, session_cookie
from tests.helpers.web import WebStack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack():
    stack = WebStack("postgres").start()
    yield stack
    stack.stop()


def test_sse_sends_snapshot_then_changes_and_resumes_from_last_event_id(stack):
    alice, cookie = session_cookie("alice")
    bob, _ = session_cookie("bob")
    mine = Order.objects.create(customer_id=alice, status="paid").pk
    Order.objects.create(customer_id=bob, status="paid")
    path = "/live/my-orders/?filter=" + urllib.parse.quote(json.dumps({"status": ["paid", "new"]}))

    async def run():
        view = View()
        events = await EventStream.open(stack.daphne.port, path, cookie)
        assert events.status == 200
        first = await events.event()
        assert first["event"] == "snapshot" and first["id"] == first["data"]["position"]
        view.apply(first["data"])
        assert set(view.rows) == {mine}
        await db(lambda: Order.objects.filter(pk=mine).update(quantity=5))
        change = await events.event()
        view.apply(change["data"])
        assert change["event"] == "change" and change["data"]["op"] == "UPDATE" and change["id"]
        events.close()
        await db(lambda: Order.objects.filter(pk=mine).update(status="shipped"))  # leaves the filter
        events = await EventStream.open(stack.daphne.port, path, cookie, last_event_id=change["id"])
        missed = await events.event()
        assert missed["event"] == "change" and missed["data"]["op"] == "DELETE" and missed["data"]["row"]["id"] == mine
        events.close()

        anonymous = await EventStream.open(stack.daphne.port, path)
        unknown = await EventStream.open(stack.daphne.port, "/live/nope/", cookie)
        bad = await EventStream.open(stack.daphne.port, "/live/my-orders/?filter=%7B%22customer_id%22%3A1%7D", cookie)
        assert (anonymous.status, unknown.status, bad.status) == (403, 404, 400)
        for stream in (anonymous, unknown, bad):
            stream.close()

    asyncio.run(run())
