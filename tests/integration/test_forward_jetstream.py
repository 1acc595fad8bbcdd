"""Forwarding to NATS JetStream: every event once in its stream in order; a server stopped and started
again loses nothing while the position holds; after kill -9 the repeats carry the same
Nats-Msg-Id and the stream drops them; the docs' consumer survives what it may read."""

import asyncio
import json
import uuid

import psycopg
import pytest

from pgnotify.forwarding import JetStream
from pgnotify.listener.notification import Notification
from tests.helpers.brokers import (
    DocConsumer,
    ForwardingProcess,
    PrivateNats,
    code_block,
    next_event_id,
    order_events_since,
    position_covers,
    start_listener,
    write_rows,
)
from tests.helpers.faults import RecordingSink, Writers, record_figures
from tests.helpers.support import database_url_for_tests
from tests.helpers.waiting import eventually, eventually_async

pytestmark = pytest.mark.once

nats = pytest.importorskip("nats")

MACHINE_NATS = "nats://127.0.0.1:4222"


async def reachable(url: str) -> bool:
    try:
        client = await nats.connect(url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
    except Exception:
        return False
    await client.close()
    return True


@pytest.fixture
async def machine_nats():
    if not await reachable(MACHINE_NATS):
        pytest.skip("no NATS on 127.0.0.1:4222")
    name = f"T{uuid.uuid4().hex[:10]}"
    yield name, f"test.{name}"  # a stream and subject prefix of this test
    client = await nats.connect(MACHINE_NATS)
    try:
        await client.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    await client.close()


async def stream_count(url: str, stream: str) -> int:
    client = await nats.connect(url)
    try:
        return (await client.jetstream().stream_info(stream)).state.messages
    finally:
        await client.close()


async def stream_messages(url: str, stream: str) -> list:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        state = (await js.stream_info(stream)).state
        if not state.messages:
            return []
        return [await js.get_msg(stream, seq) for seq in range(state.first_seq, state.last_seq + 1)]
    finally:
        await client.close()


def ids_of(messages, channel: str | None = None) -> list[int]:
    return [int(m.headers["Nats-Msg-Id"]) for m in messages if channel is None or m.subject.split(".")[2] == channel]


@pytest.mark.django_db(transaction=True)
async def test_every_event_is_stored_once_in_order(machine_nats):
    stream, prefix = machine_nats
    sink = RecordingSink()
    forwarder = JetStream(url=MACHINE_NATS, prefix=prefix, stream=stream, create_stream=True)
    _, stop, task = start_listener(f"js-{uuid.uuid4().hex[:8]}", ["orders", "products"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        assert await write_rows(60, products=15, prefix=prefix) == 135
        await sink.wait_for(lambda: len(sink.events()) == 135)
        await eventually_async(lambda: forwarder.forwarded == 135)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    messages = await stream_messages(MACHINE_NATS, stream)
    for channel, count in (("orders", 120), ("products", 15)):
        handed = [n.event for n in sink.events() if n.channel == channel]
        assert len(handed) == count
        assert ids_of(messages, channel) == [event["id"] for event in handed]  # once each, in order
        assert [json.loads(m.data) for m in messages if m.subject.split(".")[2] == channel] == handed
    table = {"orders": "shop_order", "products": "shop_product"}
    assert {m.subject for m in messages} == {f"{prefix}.{c}.{t}.INSERT" for c, t in table.items()}
    assert forwarder.duplicates == 0


async def test_notifications_that_are_not_change_events_are_skipped_unless_raw(machine_nats):
    stream, prefix = machine_nats
    forwarder = JetStream(url=MACHINE_NATS, prefix=prefix, stream=stream, create_stream=True)
    raw = JetStream(url=MACHINE_NATS, prefix=prefix + "raw", stream=stream + "R", create_stream=True, raw=True)
    try:
        for handler in (forwarder, raw):
            await handler.handle(Notification("orders", "not json"))
            await handler.handle(Notification("orders", '{"hello": 1}'))
            await handler.flush()
        assert (forwarder.skipped, forwarder.forwarded) == (2, 0)
        messages = await stream_messages(MACHINE_NATS, stream + "R")
    finally:
        await forwarder.close()
        await raw.close()
        client = await nats.connect(MACHINE_NATS)
        await client.jetstream().delete_stream(stream + "R")
        await client.close()
    shapes = [json.loads(m.data) for m in messages]
    assert [s["payload"] for s in shapes] == ["not json", '{"hello": 1}']
    assert all(s["type"] == "notification" and s["channel"] == "orders" for s in shapes)
    assert len({s["id"] for s in shapes}) == 2 and all(s["id"].startswith("n-") for s in shapes)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [s["id"] for s in shapes]
    assert {m.subject for m in messages} == {f"{prefix}raw.orders._.NOTIFY"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_nothing_is_lost_while_the_server_is_stopped(tmp_path):
    server = PrivateNats(tmp_path)
    server.start()
    name = f"js-down-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    forwarder = JetStream(url=server.url, prefix="pgnotify", stream="PGNOTIFY", create_stream=True, timeout=1.0)
    _, stop, task = start_listener(name, ["orders"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        before = await write_rows(10)
        await eventually_async(lambda: forwarder.forwarded == before)

        server.stop()
        total = before + await write_rows(15)
        await sink.wait_for(lambda: len(sink.events()) == total)  # the listener goes on
        await eventually_async(lambda: forwarder.failures >= 2)  # tried, and failed, more than once
        down_ids = [n.event["id"] for n in sink.events()[before:]]
        assert await asyncio.to_thread(position_covers, name, down_ids) == 0  # the position waits

        server.start()  # same port, same store directory
        await eventually_async(lambda: forwarder.forwarded == total, within=20)
        await eventually_async(lambda: position_covers(name, down_ids) == len(down_ids), within=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await forwarder.close()
    messages = await stream_messages(server.url, "PGNOTIFY")
    server.stop()
    assert ids_of(messages) == [n.event["id"] for n in sink.events()]  # each once, in order


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_after_kill_9_the_repeats_carry_the_same_id_and_the_stream_drops_them(machine_nats):
    stream, prefix = machine_nats
    name = f"js-kill-{uuid.uuid4().hex[:8]}"
    entry = {"handler": "pgnotify.forwarding.JetStream",
             "options": {"url": MACHINE_NATS, "prefix": prefix, "stream": stream, "create_stream": True}}

    def stored() -> list:
        return asyncio.run(stream_messages(MACHINE_NATS, stream))

    def forwarded_beyond_position() -> bool:
        """Some events are in the stream that the recorded position does not cover yet."""
        ids = ids_of(stored())
        return bool(ids) and position_covers(name, ids) < len(ids)

    first = await asyncio.to_thread(lambda: ForwardingProcess(name, ["orders"], entry).wait_live())
    first_id = await asyncio.to_thread(next_event_id)  # a new name starts at the newest event
    writers = Writers(database_url_for_tests(), count=2, rows=400).start()
    try:
        await asyncio.to_thread(writers.wait_rows, 100)
        await asyncio.to_thread(eventually, forwarded_beyond_position, 30, "events beyond the position")
        await asyncio.to_thread(first.kill)
        second = await asyncio.to_thread(lambda: ForwardingProcess(name, ["orders"], entry).wait_live())
        rows = await asyncio.to_thread(writers.finish)
        committed = await asyncio.to_thread(order_events_since, first_id)
        assert len(committed) == rows
        count = lambda: asyncio.run(stream_count(MACHINE_NATS, stream))  # noqa: E731 - run in a thread
        await asyncio.to_thread(eventually, lambda: count() >= rows, 60,
                                lambda: f"every event in the stream ({count()} of {rows}): {second.errors[-5:]}")
    finally:
        counters = await asyncio.to_thread(second.stop) if "second" in locals() else {}
    messages = await asyncio.to_thread(stored)
    assert sorted(ids_of(messages)) == [event["id"] for event in committed]  # every event, each once
    assert [json.loads(m.data) for m in sorted(messages, key=lambda m: int(m.headers["Nats-Msg-Id"]))] == committed
    # The restarted listener replayed what the killed one had forwarded beyond its position: the
    # repeats went out with the same Nats-Msg-Id, and the stream acknowledged them as duplicates.
    assert counters["duplicates"] > 0
    record_figures("jetstream_kill_9", {"events": rows, "repeats_published": counters["duplicates"],
                                        "repeats_stored": len(messages) - len({*ids_of(messages)})})


@pytest.mark.django_db(transaction=True)
async def test_the_documented_consumer_survives_what_it_may_read(machine_nats, tmp_path):
    stream, prefix = machine_nats
    forwarder = JetStream(url=MACHINE_NATS, prefix=prefix, stream=stream, create_stream=True, raw=True)
    sink = RecordingSink()
    _, stop, task = start_listener(f"js-doc-{uuid.uuid4().hex[:8]}", ["orders"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        await write_rows(3)  # 1 + 2 + 3 orders
        async with await psycopg.AsyncConnection.connect(database_url_for_tests(), autocommit=True) as conn:
            await conn.execute("SELECT pg_notify('orders', 'not json')")
        await eventually_async(lambda: forwarder.forwarded == 7)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    client = await nats.connect(MACHINE_NATS)
    js = client.jetstream()
    for junk in (b"not json", b"[1, 2]", b'{"id": 5}', b"\xff\xfe"):  # what some other publisher wrote
        await js.publish(f"{prefix}.orders.shop_order.INSERT", junk)
    # A repeat of the first event without Nats-Msg-Id, so the stream keeps it: the consumer drops it.
    await js.publish(f"{prefix}.orders.shop_order.INSERT", sink.events()[0].payload.encode())
    await client.close()

    env = {"NATS_URL": MACHINE_NATS, "PGNOTIFY_STREAM": stream, "PGNOTIFY_SUBJECT": f"{prefix}.orders.>",
           "PGNOTIFY_CONSUMER": "billing"}
    consumer = await DocConsumer(code_block("forwarding/nats.md", "## A consumer"), tmp_path, env).start()
    try:
        lines = await consumer.lines(7)
        await asyncio.wait_for(consumer_done(stream), 15)
    finally:
        code, out, err = await consumer.interrupt()
    assert code == 0, err
    assert "Traceback" not in err
    expected = [f"INSERT shop_order {n.event['pk']} None" for n in sink.events()]
    assert lines == [*expected, "notification orders not json"]
    assert out == ""  # the repeat is not worked on again
    assert err.count("skipped message") == 4


async def consumer_done(stream: str) -> None:
    """Until the consumer `billing` has nothing pending and nothing unacknowledged."""
    client = await nats.connect(MACHINE_NATS)
    try:
        while True:
            info = await client.jetstream().consumer_info(stream, "billing")
            if info.num_pending + info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)
    finally:
        await client.close()


async def test_a_closed_port_is_reported_as_refused_at_once():
    from pgnotify.handlers.forwarding.base import Message
    from tests.helpers.support import free_port

    forwarder = JetStream(url=f"nats://127.0.0.1:{free_port()}", timeout=10.0)
    message = Message(1, "orders", "shop_order", "INSERT", b"{}")
    try:
        async with asyncio.timeout(3):  # well inside the 10 s a confirmation may take
            with pytest.raises(ConnectionError, match=r"connection refused$"):
                await forwarder.send([message])
    finally:
        await forwarder.close()
