"""Drain and replay rates: pgnotify's Listener against a bare psycopg loop on the same notifications."""

import asyncio
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgnotify.listener import Listener, ListenerOptions


class CountingSink:
    """A no-op sink that records when the n-th notification arrived."""

    def __init__(self, expected: int):
        self.expected, self.count = expected, 0
        self.first = self.last = None
        self.done = asyncio.Event()

    async def handle(self, notification):
        # The clock read for the first and the last only, as the bare loop reads it.
        self.count += 1
        if self.first is None:
            self.first = time.perf_counter()
        if self.count >= self.expected:
            self.last = time.perf_counter()
            self.done.set()

    async def notice(self, notice):
        pass

    async def flush(self):
        pass


def insert_rows(url: str, table: str, count: int) -> None:
    # Single-row statements in one transaction: one notification per row (a bulk statement on a
    # watched table sends a chunk notification per 1,000 events instead).
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.executemany(sql.SQL("INSERT INTO {} (quantity) VALUES (1)").format(sql.Identifier(table)),
                           [()] * count)


async def raw_drain(url: str, count: int) -> float:
    """Events/s of a bare psycopg notifies() loop on `count` change notifications."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("LISTEN orders")
        await asyncio.to_thread(insert_rows, url, "shop_order", count)
        received, first = 0, None
        async for _ in conn.notifies():
            received += 1
            first = first or time.perf_counter()
            if received >= count:
                break
        return (count - 1) / (time.perf_counter() - first)


async def _until_live(listener: Listener) -> None:
    while listener.stats.state != "live":  # noqa: ASYNC110 - the listener offers no event for it
        await asyncio.sleep(0.01)


async def listener_drain(url: str, count: int, name: str) -> float:
    """Events/s through pgnotify's Listener (parse, de-duplication, statistics) into a no-op sink."""
    sink = CountingSink(count)
    stop = asyncio.Event()
    listener = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name), sink)
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(_until_live(listener), 30)
    await asyncio.to_thread(insert_rows, url, "shop_order", count)
    await asyncio.wait_for(sink.done.wait(), 120)
    stop.set()
    await task
    return (count - 1) / (sink.last - sink.first)


class NoOpHandler:
    async def handle(self, notification):
        pass


async def dispatcher_drain(url: str, count: int, name: str) -> float:
    """Events/s through the Listener and the Dispatcher with three handlers (two no-ops and the
    counter), as `listen_notify` hands events on: what the dispatcher's fan-out costs."""
    from pgnotify.handlers.dispatcher import Dispatcher  # Django's settings: bench.run sets them up

    counter = CountingSink(count)
    dispatcher = Dispatcher([NoOpHandler(), NoOpHandler(), counter])
    stop = asyncio.Event()
    listener = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name), dispatcher)
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(_until_live(listener), 30)
    await asyncio.to_thread(insert_rows, url, "shop_order", count)
    await asyncio.wait_for(counter.done.wait(), 120)
    stop.set()
    await task
    if hasattr(dispatcher, "close"):
        await dispatcher.close(1.0)
    return (count - 1) / (counter.last - counter.first)


async def replay_rate(url: str, count: int, name: str) -> float:
    """Events/s replayed from the log for a listener that was away while `count` rows were written."""
    warm = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name), CountingSink(1))
    stop = asyncio.Event()
    task = asyncio.create_task(warm.run(stop))
    await asyncio.wait_for(_until_live(warm), 30)
    stop.set()
    await task
    await asyncio.to_thread(insert_rows, url, "shop_order", count)
    sink = CountingSink(count)
    listener = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name), sink)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(sink.done.wait(), 300)
    elapsed = sink.last - started
    stop.set()
    await task
    return count / elapsed


def notify_round_trip_ms(url: str, count: int = 200) -> dict:
    """The latency floor of the NOTIFY source: a bare NOTIFY's commit until a bare LISTEN
    connection has it, p50 and p99 over `count` one after the other."""
    samples = []
    with psycopg.connect(url, autocommit=True) as listening, psycopg.connect(url, autocommit=True) as sending:
        listening.execute("LISTEN bench_round_trip")
        for _ in range(count):
            start = time.perf_counter()
            sending.execute("NOTIFY bench_round_trip")
            for _ in listening.notifies(timeout=10, stop_after=1):
                samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"p50_ms": round(samples[len(samples) // 2], 3), "p99_ms": round(samples[int(len(samples) * 0.99)], 3)}
