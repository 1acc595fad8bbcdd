"""A checkpoint runs beside the reading, for each source: a change committed while the checkpoint
waits (here on the sink's flush, a handler behind) is handed on at once, not after it; and once
the flush is done the position is recorded, so a restart hands on nothing again."""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async

from notifyproject.shop.models import Order
from pgnotify.connection import listener_conninfo
from pgnotify.listener import ListenerOptions
from pgnotify.sources import make_listener
from tests.helpers.faults import RecordingSink
from tests.helpers.sources import use_source

pytestmark = pytest.mark.django_db(transaction=True)


class HeldSink(RecordingSink):
    """A sink whose flush waits while `open` is clear: a handler that has not caught up."""

    def __init__(self):
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()
        self.flushes_waiting = 0

    async def flush(self) -> None:
        self.flushes_waiting += 1
        self._changed.set()
        try:
            await self.open.wait()
        finally:
            self.flushes_waiting -= 1


def orders(sink: RecordingSink) -> list[int]:
    return [n.event["pk"] for n in sink.notifications if n.channel == "orders" and n.event is not None]


async def run_listener(name: str, sink: RecordingSink, **options):
    stop = asyncio.Event()
    listener_options = ListenerOptions(channels=["orders", "system"], name=name, **options)
    listener = make_listener(listener_conninfo(), listener_options, sink)
    task = asyncio.create_task(listener.run(stop))
    await sink.wait_for(lambda: "live" in sink.states(), within=20)
    return listener, stop, task


@pytest.fixture(params=["notify", "wal"])
def source(request, transactional_db, settings):
    with use_source(request.param, settings):
        yield request.param


async def test_a_change_is_handed_on_while_a_checkpoint_waits(source):
    name = f"beside-{uuid.uuid4().hex[:8]}"
    sink = HeldSink()
    listener, stop, task = await run_listener(name, sink)
    try:
        first = await database_sync_to_async(Order.objects.create)(quantity=1)
        await sink.wait_for(lambda: first.pk in orders(sink))
        sink.open.clear()
        await sink.wait_for(lambda: sink.flushes_waiting, within=10)  # the next checkpoint waits
        second = await database_sync_to_async(Order.objects.create)(quantity=2)
        await sink.wait_for(lambda: second.pk in orders(sink), within=5)
        assert sink.flushes_waiting, "the change came after the checkpoint, not beside it"
        sink.open.set()
    finally:
        sink.open.set()
        stop.set()
        await asyncio.wait_for(task, 15)
    assert orders(sink) == [first.pk, second.pk]
    assert listener.stats.reconnects == 0

    again = RecordingSink()
    _, stop, task = await run_listener(name, again)
    third = await database_sync_to_async(Order.objects.create)(quantity=3)
    await again.wait_for(lambda: third.pk in orders(again))
    stop.set()
    await asyncio.wait_for(task, 15)
    assert orders(again) == [third.pk]  # the position was recorded past the first two


async def test_a_checkpoint_longer_than_the_interval_holds_nothing_up(source):
    # A flush held for several checkpoint intervals: changes are still handed on meanwhile, one
    # checkpoint at a time, and the listener stops at once when asked.
    sink = HeldSink()
    _, stop, task = await run_listener(f"long-{uuid.uuid4().hex[:8]}", sink, checkpoint_interval=0.2)
    try:
        sink.open.clear()
        await sink.wait_for(lambda: sink.flushes_waiting, within=10)
        written = []
        for quantity in range(5):  # over about 1 s: 5 intervals while the one checkpoint waits
            written.append((await database_sync_to_async(Order.objects.create)(quantity=quantity)).pk)
            await sink.wait_for(lambda: written[-1] in orders(sink), within=5)
            # Time for another interval to pass, nothing awaited: with a checkpoint overdue, the WAL
            # source's loop spun here without yielding, and nothing ran again.
            await asyncio.sleep(0.2)
        assert sink.flushes_waiting == 1, "one checkpoint at a time"
        sink.open.set()
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        sink.open.set()
        stop.set()
        if not task.done():
            task.cancel()
    assert orders(sink)[-5:] == written
