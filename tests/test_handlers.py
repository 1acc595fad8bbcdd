"""Pluggable handlers (docs/handlers.md): channel filters, sync and async callables, a failing
handler retried with backoff without holding the others up, and the listener's position held
back until every handler has taken every event."""

import asyncio
import logging
import re
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.exceptions import HandlerConfigError, HandlersBehindError
from pgnotify.handlers.dispatcher import Dispatcher
from pgnotify.handlers.entries import Filtered, load_handler
from pgnotify.listener import Listener, ListenerOptions
from pgnotify.listener.notification import Notification
from tests.faults import RecordingSink
from tests.support import test_database_url as database_url

RECEIVED: dict[str, list] = {"sync": [], "async": []}
SYNC_THREADS: list[int] = []


def record_sync(notification):
    SYNC_THREADS.append(threading.get_ident())
    RECEIVED["sync"].append(notification.payload)


async def record_async(notification):
    RECEIVED["async"].append(notification.payload)


class Flaky:
    """Fails while `failing` is set; records what it took, in order."""

    def __init__(self, failing: bool = False):
        self.failing = failing
        self.taken: list[str] = []
        self.attempts = 0
        self.changed = asyncio.Event()

    async def handle(self, notification):
        self.attempts += 1
        self.changed.set()
        if self.failing:
            raise ConnectionError("downstream unreachable\nsecond line")
        self.taken.append(notification.payload)

    async def wait_until(self, predicate, within: float = 10.0):
        async def until():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), within)


def notification(channel: str, payload: str) -> Notification:
    return Notification(channel, payload, pid=1)


@pytest.fixture(autouse=True)
def fresh_records():
    for received in RECEIVED.values():
        received.clear()
    SYNC_THREADS.clear()


async def test_configured_handlers_filter_by_channel_and_take_sync_and_async_callables():
    handlers = [
        load_handler({"handler": "tests.test_handlers.record_sync", "channels": ["orders"]}),
        load_handler("tests.test_handlers.record_async"),
    ]
    dispatcher = Dispatcher(handlers)
    for channel, payload in [("orders", "o1"), ("products", "p1"), ("orders", "o2"), ("system", "s1")]:
        await dispatcher.handle(notification(channel, payload))
    await dispatcher.flush()
    assert RECEIVED["sync"] == ["o1", "o2"]
    assert RECEIVED["async"] == ["o1", "p1", "o2", "s1"]
    # Sync callables run in a worker thread, so they may use the ORM.
    assert SYNC_THREADS and threading.get_ident() not in SYNC_THREADS


def test_bad_handler_entries_are_one_clear_error():
    with pytest.raises(HandlerConfigError, match=re.escape("cannot import 'tests.nowhere.handler'")):
        load_handler("tests.nowhere.handler")
    with pytest.raises(HandlerConfigError, match="channels"):
        load_handler({"handler": "tests.test_handlers.record_sync", "channels": "orders"})
    with pytest.raises(HandlerConfigError, match=re.escape("has unknown keys ['channel']")):
        load_handler({"handler": "tests.test_handlers.record_sync", "channel": ["orders"]})
    forwarder = load_handler({"handler": "pgnotify.forwarding.RedisStreamForwarder", "channels": ["orders"],
                              "options": {"url": "redis://127.0.0.1:1/0", "maxlen": 10}})
    assert forwarder.channels == {"orders"} and forwarder.handler.options.maxlen == 10


async def test_failing_handler_is_retried_in_order_and_does_not_hold_up_the_others(caplog):
    flaky, steady = Flaky(failing=True), Flaky()
    dispatcher = Dispatcher([flaky, steady], patience=0.3)
    with caplog.at_level(logging.INFO, logger="pgnotify.handlers"):
        for i in range(5):
            await dispatcher.handle(notification("orders", f"e{i}"))
        await steady.wait_until(lambda: len(steady.taken) == 5)  # not held up by the failing one
        assert steady.taken == [f"e{i}" for i in range(5)]
        assert flaky.taken == []
        with pytest.raises(HandlersBehindError, match="Flaky"):
            await dispatcher.flush()  # still failing after the patience: the position must hold
        assert 2 <= flaky.attempts < 10  # backoff: a handful of attempts within the patience
        flaky.failing = False
        await dispatcher.handle(notification("orders", "e5"))
        await flaky.wait_until(lambda: len(flaky.taken) == 6)
        await dispatcher.flush()
    assert flaky.taken == [f"e{i}" for i in range(6)]  # every event once, in order
    assert steady.taken == flaky.taken
    # One line for the failures (counted, each on one line), one when it works again.
    failures = [r.getMessage() for r in caplog.records if "handler Flaky failed" in r.getMessage()]
    assert 1 <= len(failures) <= 2, failures
    assert all("\n" not in line and "ConnectionError: downstream unreachable" in line for line in failures)
    failed_calls = flaky.attempts - len(flaky.taken)
    assert sum(int(re.search(r"\((\d+) calls\)", line).group(1)) for line in failures) == failed_calls
    assert any(f"handler Flaky works again after {failed_calls} failed calls" in r.getMessage() for r in caplog.records)
    await dispatcher.close()


async def test_flush_waits_for_a_handler_that_recovers_within_its_patience():
    flaky = Flaky(failing=True)
    dispatcher = Dispatcher([flaky], patience=5.0)
    await dispatcher.handle(notification("orders", "e0"))

    async def recover():
        await flaky.wait_until(lambda: flaky.attempts >= 2)
        flaky.failing = False

    recovering = asyncio.create_task(recover())
    await asyncio.wait_for(dispatcher.flush(), 5)  # returns only once the event is taken
    await recovering
    assert flaky.taken == ["e0"]


def saved_position(name: str) -> str | None:
    with psycopg.connect(database_url(), autocommit=True) as conn:
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
        async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as writer:
            for _ in range(3):
                await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
        await sink.wait_for(lambda: len(sink.events()) == 3)  # the other handler is not held up
        # Several checkpoints pass (each retries the failing handler) and the position holds.
        await flaky.wait_until(lambda: flaky.attempts >= 4)
        assert await asyncio.to_thread(saved_position, name) == before
        flaky.failing = False

        async def position_advanced():
            while await asyncio.to_thread(saved_position, name) == before:  # noqa: ASYNC110 - a table, no event
                await asyncio.sleep(0.05)

        await asyncio.wait_for(position_advanced(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert flaky.taken == [n.payload for n in sink.events()]


async def eventually(predicate, within: float = 5.0) -> None:
    async def until():
        while not predicate():  # noqa: ASYNC110 - state changed by a handler's thread
            await asyncio.sleep(0.01)

    await asyncio.wait_for(until(), within)


class Hangs:
    """Blocks while `release` is clear: a sync call stuck in its thread, or an async one."""

    def __init__(self, sync: bool, hang_calls: int | None = None):
        self.sync = sync
        self.release = threading.Event()
        self.hang_calls = hang_calls  # hang on the first N calls only (None: every call)
        self.calls = 0
        self.taken: list[str] = []
        self.threads: list[int] = []

    def __call__(self, notification):
        if self.sync:
            return self._sync(notification)
        return self._async(notification)

    def _sync(self, notification):
        self.calls += 1
        self.threads.append(threading.get_ident())
        if self.hang_calls is None or self.calls <= self.hang_calls:
            self.release.wait()
        self.taken.append(notification.payload)

    async def _async(self, notification):
        self.calls += 1
        if self.hang_calls is None or self.calls <= self.hang_calls:
            while not self.release.is_set():  # noqa: ASYNC110 - a thread-safe flag the test sets
                await asyncio.sleep(0.01)
        self.taken.append(notification.payload)


class SyncHang(Hangs):
    def handle(self, notification):
        return self._sync(notification)


class AsyncHang(Hangs):
    async def handle(self, notification):
        return await self._async(notification)


async def test_a_hung_handler_holds_up_nobody_and_costs_the_flush_nothing():
    sync_hang, async_hang, steady = SyncHang(sync=True), AsyncHang(sync=False), Flaky()
    dispatcher = Dispatcher([sync_hang, async_hang, steady], patience=0.3)
    try:
        for i in range(10):
            await dispatcher.handle(notification("orders", f"e{i}"))
        await steady.wait_until(lambda: len(steady.taken) == 10)
        await dispatcher.notice({"type": "listener", "state": "lost"})  # never waits on a handler
        with pytest.raises(HandlersBehindError, match="SyncHang, AsyncHang"):
            await dispatcher.flush()  # the patience, once
        started = time.monotonic()
        with pytest.raises(HandlersBehindError):
            await dispatcher.flush()  # lanes already behind are not waited for
        assert time.monotonic() - started < 0.1
        sync_hang.release.set()  # the sync one comes back and catches up, in order
        await eventually(lambda: len(sync_hang.taken) == 10)
        assert sync_hang.taken == steady.taken
        with pytest.raises(HandlersBehindError, match="AsyncHang"):
            await dispatcher.flush()
    finally:
        started = time.monotonic()
        await dispatcher.close(wait=0.2)
        assert time.monotonic() - started < 1
        async_hang.release.set()


async def test_a_call_that_overruns_its_timeout_is_given_up_and_retried_in_a_fresh_thread(caplog):
    hangs = SyncHang(sync=True, hang_calls=1)
    dispatcher = Dispatcher([Filtered(hangs, timeout=0.2)], patience=3)
    try:
        with caplog.at_level(logging.WARNING, logger="pgnotify.handlers"):
            for i in range(3):
                await dispatcher.handle(notification("orders", f"e{i}"))
            await dispatcher.flush()  # the first call is given up after 0.2 s, then retried
        assert hangs.taken == ["e0", "e1", "e2"]
        assert hangs.threads[0] != hangs.threads[1] == hangs.threads[2]  # one thread per handler, a new one
        assert any("HandlerTimeoutError: no answer within 0.2 s (its thread is left behind)" in r.getMessage()
                   for r in caplog.records)
    finally:
        hangs.release.set()
        await dispatcher.close()


def test_timeout_entries_are_checked():
    handler = load_handler({"handler": "tests.test_handlers.record_sync", "timeout": 2.5})
    assert handler.timeout == 2.5 and handler.channels is None
    for bad in ("5", 0, -1, True):
        with pytest.raises(HandlerConfigError, match=re.escape("'timeout' of 'tests.test_handlers.record")):
            load_handler({"handler": "tests.test_handlers.record_sync", "timeout": bad})


async def test_sync_handlers_have_a_thread_each_and_keep_it():
    first, second = SyncHang(sync=True, hang_calls=0), SyncHang(sync=True, hang_calls=0)
    dispatcher = Dispatcher([first, second])
    for i in range(3):
        await dispatcher.handle(notification("orders", f"e{i}"))
    await dispatcher.flush()
    await dispatcher.close()
    assert len(set(first.threads)) == len(set(second.threads)) == 1
    assert set(first.threads) != set(second.threads)
