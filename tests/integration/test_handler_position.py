"""The listener's position is held back until every handler has taken every event (docs/handlers.md)."""

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.handlers.dispatcher import Dispatcher
from pgnotify.listener import Listener, ListenerOptions
from tests.helpers.faults import RecordingSink
from tests.helpers.handlers import Flaky
from tests.helpers.support import database_url_for_tests
from tests.helpers.waiting import eventually_async


def saved_position(name: str) -> str | None:
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        row = conn.execute("SELECT snapshot FROM pgnotify_listener WHERE name = %s", [name]).fetchone()
    return row[0] if row else None


@pytest.mark.django_db(transaction=True)
async def test_listener_position_does_not_advance_while_a_handler_fails():
    name = f"handlers-{uuid.uuid4().hex[:8]}"
    flaky, sink, stop = Flaky(), RecordingSink(), asyncio.Event()
    options = ListenerOptions(channels=["orders"], name=name, retention=timedelta(hours=1))
    listener = Listener(listener_conninfo(), options, Dispatcher([sink, flaky], patience=0.2))
    task = asyncio.create_task(listener.run(stop))
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        before = await asyncio.to_thread(saved_position, name)
        assert before is not None
        flaky.failing = True
        async with await psycopg.AsyncConnection.connect(database_url_for_tests(), autocommit=True) as writer:
            for _ in range(3):
                await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
        await sink.wait_for(lambda: len(sink.events()) == 3)  # the other handler is not held up
        # Several checkpoints pass (each retries the failing handler) and the position holds.
        await flaky.wait_until(lambda: flaky.attempts >= 4)
        assert await asyncio.to_thread(saved_position, name) == before
        flaky.failing = False

        await eventually_async(lambda: asyncio.to_thread(lambda: saved_position(name) != before), 10,
                               "the position to advance once the handler recovers")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert flaky.taken == [n.payload for n in sink.events()]
