"""Batch reads of notifications (pgnotify.receiving): server order kept across psycopg's own reads."""

from contextlib import asynccontextmanager

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.listener.receiving import BATCH, NotificationReceiver

pytestmark = pytest.mark.django_db(transaction=True)


@asynccontextmanager
async def listening():
    """A connection LISTENing on 'edge' with its receiver, and a second connection."""
    conninfo = listener_conninfo()
    async with (await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as listen,
                await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as other):
        receiver = NotificationReceiver(listen)
        await listen.execute("LISTEN edge")
        yield listen, other, receiver


async def test_notifications_read_during_a_query_come_first_and_in_order():
    async with listening() as (listen, sender, receiver):
        assert await receiver.receive(0.05) == []  # nothing yet: waits, then an empty batch

        await sender.execute("SELECT pg_notify('edge', 'a'), pg_notify('edge', 'b')")
        await sender.execute("NOTIFY edge, 'c'")
        await listen.execute("SELECT pg_sleep(0.1)")  # psycopg reads a, b, c while this runs
        await sender.execute("NOTIFY edge, 'd'")

        received = []
        while len(received) < 4:
            batch = await receiver.receive(5.0)
            assert batch, "no notification within 5 s"
            received += batch
        assert [payload for _, payload, _ in received] == ["a", "b", "c", "d"]
        assert {channel for channel, _, _ in received} == {"edge"}
        assert {pid for _, _, pid in received} == {sender.info.backend_pid}


async def test_a_broken_connection_raises_instead_of_waiting():
    async with listening() as (listen, admin, receiver):
        await admin.execute("SELECT pg_terminate_backend(%s)", [listen.info.backend_pid])
        with pytest.raises(psycopg.OperationalError):
            for _ in range(10):  # the first reads may see the termination notice only
                await receiver.receive(2.0)


async def test_a_flood_read_during_a_query_comes_in_bounded_batches_in_order():
    async with listening() as (listen, sender, receiver):
        count = BATCH * 2 + 5
        await sender.execute("SELECT pg_notify('edge', n::text) FROM generate_series(1, %s) n", [count])
        await listen.execute("SELECT pg_sleep(0.1)")  # psycopg reads the whole flood while this runs
        await sender.execute("NOTIFY edge, 'after'")

        batches = []
        while sum(map(len, batches)) < count + 1:
            batch = await receiver.receive(5.0)
            assert batch, "no notification within 5 s"
            batches.append(batch)
        assert max(map(len, batches)) <= BATCH
        assert [payload for batch in batches for _, payload, _ in batch] == [*map(str, range(1, count + 1)), "after"]
