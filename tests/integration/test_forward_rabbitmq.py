"""Forwarding to RabbitMQ: every event once in a bound queue, in order, persistent, message_id = id;
with the broker cut off and then hanging (a proxy in front of it) nothing is lost and the
position holds; after kill -9 the repeats carry the same message_id; the docs' consumer
survives what it may read."""

import asyncio
import json
import uuid

import psycopg
import pytest

from pgnotify.forwarding import RabbitMQ
from pgnotify.listener.notification import Notification
from tests.helpers.brokers import (
    BrokerProxy,
    DocConsumer,
    ForwardingProcess,
    code_block,
    next_event_id,
    order_events_since,
    position_covers,
    start_listener,
    write_rows,
)
from tests.helpers.faults import RecordingSink, Writers, record_figures
from tests.helpers.support import database_url_for_tests
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.once

aio_pika = pytest.importorskip("aio_pika")

MACHINE_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
async def bound_queue():
    """A durable topic exchange of this test and an exclusive queue bound to all of it."""
    try:
        connection = await aio_pika.connect(MACHINE_AMQP, timeout=2)
    except Exception:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    channel = await connection.channel()
    name = f"test-{uuid.uuid4().hex[:10]}"
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "#")
    yield name, queue
    await exchange.delete()
    await connection.close()


async def drain(queue, at_least: int, within: float = 20.0) -> list:
    """The queue's messages, acknowledged, once there are at least `at_least` (then what is left)."""
    messages = []

    async def take():
        while True:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                if len(messages) >= at_least:
                    return
                await asyncio.sleep(0.05)
                continue
            messages.append(message)

    await asyncio.wait_for(take(), within)
    return messages


def first_occurrences(messages) -> list[int]:
    seen, ids = set(), []
    for message in messages:
        if message.message_id not in seen:
            seen.add(message.message_id)
            ids.append(int(message.message_id))
    return ids


@pytest.mark.django_db(transaction=True)
async def test_every_event_is_published_once_in_order(bound_queue):
    exchange, queue = bound_queue
    sink = RecordingSink()
    forwarder = RabbitMQ(url=MACHINE_AMQP, exchange=exchange, declare=True)
    _, stop, task = start_listener(f"amqp-{uuid.uuid4().hex[:8]}", ["orders", "products"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        assert await write_rows(60, products=15, prefix=exchange) == 135
        await sink.wait_for(lambda: len(sink.events()) == 135)
        await eventually_async(lambda: forwarder.forwarded == 135)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    messages = await drain(queue, 135)
    assert len(messages) == 135
    for channel, count in (("orders", 120), ("products", 15)):
        handed = [n.event for n in sink.events() if n.channel == channel]
        mine = [m for m in messages if m.routing_key.split(".")[0] == channel]
        assert len(handed) == len(mine) == count
        assert [int(m.message_id) for m in mine] == [event["id"] for event in handed]  # once each, in order
        assert [json.loads(m.body) for m in mine] == handed
    assert {m.routing_key for m in messages} == {"orders.shop_order.INSERT", "products.shop_product.INSERT"}
    assert {(m.delivery_mode, m.content_type, m.app_id) for m in messages} == {
        (aio_pika.DeliveryMode.PERSISTENT, "application/json", "pgnotify")}


async def test_raw_notifications_only_when_asked_and_mandatory_holds_until_a_queue_is_bound(bound_queue):
    exchange, queue = bound_queue
    plain = RabbitMQ(url=MACHINE_AMQP, exchange=exchange)
    raw = RabbitMQ(url=MACHINE_AMQP, exchange=exchange, raw=True)
    unbound = RabbitMQ(url=MACHINE_AMQP, exchange=exchange + "-nobody", exchange_type="topic", declare=True,
                       mandatory=True, timeout=2.0)
    try:
        for handler in (plain, raw):
            await handler.handle(Notification("orders", "not json"))
            await handler.flush()
        assert (plain.skipped, plain.forwarded, raw.forwarded) == (1, 0, 1)
        [message] = await drain(queue, 1)
        shape = json.loads(message.body)
        assert shape["type"] == "notification" and shape["payload"] == "not json"
        assert message.message_id == shape["id"] and shape["id"].startswith("n-")
        assert message.routing_key == "orders._.NOTIFY"

        await unbound.handle(Notification("orders", json.dumps({"id": 1, "txid": 1, "table": "t", "op": "INSERT"})))
        with pytest.raises(Exception, match="not confirmed"):
            await unbound.flush()  # returned by the broker: no queue is bound
        assert unbound.waiting == 1
    finally:
        for handler in (plain, raw, unbound):
            await handler.close()
        connection = await aio_pika.connect(MACHINE_AMQP)
        channel = await connection.channel()
        await channel.exchange_delete(exchange + "-nobody")
        await connection.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_nothing_is_lost_while_the_broker_is_cut_off_or_hangs(bound_queue):
    exchange, queue = bound_queue
    name = f"amqp-down-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    with BrokerProxy("127.0.0.1", 5672) as proxy:
        forwarder = RabbitMQ(url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", exchange=exchange, timeout=1.0)
        _, stop, task = start_listener(name, ["orders"], [sink, forwarder])
        try:
            await sink.wait_for(lambda: "live" in sink.states())
            before = await write_rows(10)
            await eventually_async(lambda: forwarder.forwarded == before)

            await outage_and_back(proxy.cut, proxy, forwarder, sink, name)  # connections reset
            await outage_and_back(proxy.freeze, proxy, forwarder, sink, name)  # a broker that answers nothing
            total = len(sink.events())
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
            await forwarder.close()
    messages = await drain(queue, total)
    assert first_occurrences(messages) == [n.event["id"] for n in sink.events()]  # every event, in order
    record_figures("rabbitmq_outage", {"events": total, "published": len(messages),
                                       "repeats": len(messages) - total, "failed_attempts": forwarder.failures})


async def outage_and_back(outage, proxy: BrokerProxy, forwarder, sink: RecordingSink, name: str) -> None:
    outage()
    failures, forwarded = forwarder.failures, forwarder.forwarded
    total = len(sink.events()) + await write_rows(10)
    await sink.wait_for(lambda: len(sink.events()) == total)  # the listener goes on
    await eventually_async(lambda: forwarder.failures >= failures + 2)  # tried, and failed, more than once
    down_ids = [n.event["id"] for n in sink.events()[forwarded:]]
    assert await asyncio.to_thread(position_covers, name, down_ids) == 0  # the position waits
    proxy.restore()
    await eventually_async(lambda: forwarder.forwarded == total, within=20)
    await eventually_async(lambda: position_covers(name, down_ids) == len(down_ids), within=10)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_after_kill_9_the_repeats_carry_the_same_message_id(bound_queue):
    exchange, queue = bound_queue
    name = f"amqp-kill-{uuid.uuid4().hex[:8]}"
    entry = {"handler": "pgnotify.forwarding.RabbitMQ", "options": {"url": MACHINE_AMQP, "exchange": exchange}}
    messages, unique = [], set()

    async def collect_more() -> None:
        more = await drain(queue, 1, within=60)
        messages.extend(more)
        unique.update(m.message_id for m in more)

    first = await asyncio.to_thread(lambda: ForwardingProcess(name, ["orders"], entry).wait_live())
    first_id = await asyncio.to_thread(next_event_id)  # a new name starts at the newest event
    writers = Writers(database_url_for_tests(), count=2, rows=400).start()
    second = None
    try:
        await asyncio.to_thread(writers.wait_rows, 100)
        while True:  # until some published events are beyond the recorded position
            await collect_more()
            ids = [int(m.message_id) for m in messages]
            if await asyncio.to_thread(position_covers, name, ids) < len(ids):
                break
        await asyncio.to_thread(first.kill)
        second = await asyncio.to_thread(lambda: ForwardingProcess(name, ["orders"], entry).wait_live())
        rows = await asyncio.to_thread(writers.finish)
        committed = await asyncio.to_thread(order_events_since, first_id)
        assert len(committed) == rows
        while len(unique) < rows:
            await collect_more()
    finally:
        if second is not None:
            await asyncio.to_thread(second.stop)
    by_id: dict[str, list] = {}
    for message in messages:
        by_id.setdefault(message.message_id, []).append(message)
    assert sorted(int(i) for i in by_id) == [event["id"] for event in committed]  # every event
    repeats = {i: group for i, group in by_id.items() if len(group) > 1}
    assert repeats, "the restarted listener replayed nothing the killed one had published"
    for message_id, group in repeats.items():  # a repeat is the same event under the same id
        assert {m.body for m in group} == {group[0].body}
        assert json.loads(group[0].body)["id"] == int(message_id)
    record_figures("rabbitmq_kill_9", {"events": rows, "published": len(messages),
                                       "repeated_events": len(repeats)})


@pytest.mark.django_db(transaction=True)
async def test_the_documented_consumer_survives_what_it_may_read(bound_queue, tmp_path):
    exchange, _ = bound_queue
    queue_name = f"{exchange}-billing"
    env = {"AMQP_URL": MACHINE_AMQP, "PGNOTIFY_EXCHANGE": exchange, "PGNOTIFY_QUEUE": queue_name,
           "PGNOTIFY_BINDING": "orders.#"}
    consumer = await DocConsumer(code_block("forwarding/rabbitmq.md", "## A consumer"), tmp_path, env).start()
    connection = await aio_pika.connect(MACHINE_AMQP)
    try:
        channel = await connection.channel()

        async def queue_bound() -> None:
            while True:
                probe = await connection.channel()
                try:
                    await probe.declare_queue(queue_name, passive=True)
                    return
                except aio_pika.exceptions.ChannelClosed:
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(queue_bound(), 15)  # the consumer declared and bound its queue
        forwarder = RabbitMQ(url=MACHINE_AMQP, exchange=exchange, raw=True)
        sink = RecordingSink()
        _, stop, task = start_listener(f"amqp-doc-{uuid.uuid4().hex[:8]}", ["orders"], [sink, forwarder])
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
        exchange_object = await channel.get_exchange(exchange)
        for junk in (b"not json", b"[1, 2]", b'{"id": 5}', b"\xff\xfe"):  # what some other publisher wrote
            await exchange_object.publish(aio_pika.Message(junk), "orders.shop_order.INSERT")
        repeat = sink.events()[0]  # the first event again, as a replay would publish it
        await exchange_object.publish(aio_pika.Message(repeat.payload.encode(), message_id=str(repeat.event["id"])),
                                      "orders.shop_order.INSERT")
        # Last, an event of our own: once it is printed, everything before it has been worked on.
        last = {"id": 10**12, "channel": "orders", "table": "shop_order", "op": "DELETE", "pk": 0, "row": {}}
        await exchange_object.publish(aio_pika.Message(json.dumps(last).encode()), "orders.shop_order.DELETE")
        lines = await consumer.lines(8)
    finally:
        code, out, err = await consumer.interrupt()
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
        await connection.close()
    assert code == 0, err
    assert "Traceback" not in err
    expected = [f"INSERT shop_order {n.event['pk']} None" for n in sink.events()]
    assert lines == [*expected, "notification orders not json", "DELETE shop_order 0 None"]  # not the repeat
    assert out == ""
    assert err.count("skipped message") == 4


def test_the_aio_pika_channel_the_forwarder_publishes_on_is_still_there():
    """The forwarder publishes on aio-pika's own aiormq channel with wait=False (1.6 times faster
    than Exchange.publish): fail loudly if a new aio-pika or aiormq drops either."""
    import inspect

    import aiormq

    assert "get_underlay_channel" in dir(aio_pika.Channel)
    assert "wait" in inspect.signature(aiormq.Channel.basic_publish).parameters
