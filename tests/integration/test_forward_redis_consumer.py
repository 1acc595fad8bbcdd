"""Redis Streams that a consumer can trust: only change events by default; raw notifications only when
asked, with a unique id; and the consumer of docs/forwarding/redis-streams.md, run verbatim,
survives every kind of entry a stream may hold (and its own unacknowledged ones after a crash)."""

import asyncio
import json
import uuid

import psycopg
import pytest

from pgnotify.forwarding import RedisStreamForwarder
from tests.helpers.brokers import DocConsumer, code_block, start_listener, stream_events, write_rows
from tests.helpers.faults import RecordingSink
from tests.helpers.support import MACHINE_REDIS, database_url_for_tests
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.once


async def notify(*payloads: str) -> None:
    """What `manage.py notify orders ...` and a plain pg_notify send: notifications that are not change events."""
    async with await psycopg.AsyncConnection.connect(database_url_for_tests(), autocommit=True) as conn:
        for payload in payloads:
            await conn.execute("SELECT pg_notify('orders', %s)", [payload])


async def forward(prefix: str, raw: bool, sink: RecordingSink) -> RedisStreamForwarder:
    """Six change events and two other notifications on orders, through a listener and the forwarder."""
    forwarder = RedisStreamForwarder(url=MACHINE_REDIS, prefix=prefix, raw=raw)
    _, stop, task = start_listener(f"redis-{uuid.uuid4().hex[:8]}", ["orders"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        await write_rows(3)  # 1 + 2 + 3 orders
        await notify("not json", '{"status": "paid"}')
        await sink.wait_for(lambda: len(sink.notifications) >= 8)
        await eventually_async(lambda: forwarder.forwarded + forwarder.skipped == 8)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    return forwarder


@pytest.mark.django_db(transaction=True)
async def test_only_change_events_by_default_each_with_its_id(machine_redis):
    client, prefix = machine_redis
    sink = RecordingSink()
    forwarder = await forward(prefix, False, sink)
    entries = stream_events(client, prefix + "orders")
    assert (forwarder.forwarded, forwarder.skipped) == (6, 2)
    assert [int(e["id"]) for e in entries] == [n.event["id"] for n in sink.events()]
    assert [json.loads(e["payload"]) for e in entries] == [n.event for n in sink.events()]


@pytest.mark.django_db(transaction=True)
async def test_raw_notifications_have_a_documented_shape_and_a_unique_id(machine_redis):
    client, prefix = machine_redis
    sink = RecordingSink()
    forwarder = await forward(prefix, True, sink)
    entries = stream_events(client, prefix + "orders")
    assert (forwarder.forwarded, forwarder.skipped) == (8, 0)
    raw = [e for e in entries if e["id"].startswith("n-")]
    shapes = [json.loads(e["payload"]) for e in raw]
    assert [s["payload"] for s in shapes] == ["not json", '{"status": "paid"}']
    assert [s["id"] for s in shapes] == [e["id"] for e in raw] and len({e["id"] for e in raw}) == 2
    assert all(len(s["id"]) == 34 and s["type"] == "notification" and s["channel"] == "orders" for s in shapes)
    assert all(s["received"].endswith("+00:00") for s in shapes)


@pytest.mark.django_db(transaction=True)
async def test_the_documented_consumer_survives_every_entry_and_its_own_pending_ones(machine_redis, tmp_path):
    client, prefix = machine_redis
    stream = prefix + "orders"
    group, me = "billing", "billing-1"
    # A consumer crashed on two entries of another writer before: they are its pending entries,
    # and one of them was trimmed since (XREADGROUP "0" gives it without fields).
    client.xgroup_create(stream, group, id="0", mkstream=True)
    crashed_on = [client.xadd(stream, {"channel": "orders", "payload": "not json"}),  # no id, not JSON
                  client.xadd(stream, {"id": "3", "channel": "orders", "payload": '{"id": 3}'})]
    assert len(client.xreadgroup(group, me, {stream: ">"}, count=2)[0][1]) == 2
    client.xdel(stream, crashed_on[1])

    sink = RecordingSink()
    await forward(prefix, True, sink)  # six change events, two raw notifications
    first = next(e for e in stream_events(client, stream) if e.get("id", "").isdigit())
    for fields in ({"id": "7", "channel": "orders", "payload": "[1, 2]"},  # JSON, not an object
                   {"id": "8", "payload": json.dumps({"id": 8, "op": "INSERT"})},  # an object, not an event
                   {"payload": b"\xff\xfe not UTF-8"},
                   {"unrelated": "field"},
                   first):  # a repeat of the first event, as after a crash
        client.xadd(stream, fields)
    last_id = client.xadd(stream, {"id": "10000000", "channel": "orders", "payload": json.dumps(
        {"id": 10**7, "channel": "orders", "table": "shop_order", "op": "DELETE", "pk": 0, "row": {}})})

    env = {"REDIS_URL": MACHINE_REDIS, "PGNOTIFY_STREAM": stream, "CONSUMER": me}
    consumer = await DocConsumer(code_block("forwarding/redis-streams.md", "## A consumer"), tmp_path, env).start()
    try:
        lines = await consumer.lines(9)
        await eventually_async(lambda: client.xpending(stream, group)["pending"] == 0, within=10)
    finally:
        code, out, err = await consumer.interrupt()
    assert code == 0, err
    assert "Traceback" not in err
    expected = [f"INSERT shop_order {n.event['pk']} None" for n in sink.events()]
    assert lines == [*expected, "notification orders not json", 'notification orders {"status": "paid"}',
                     "DELETE shop_order 0 None"]
    assert out == ""  # the repeat was not worked on again
    assert err.count("skipped entry") == 6  # its two pending ones and four of the other writer
    [info] = client.xinfo_groups(stream)
    assert info["last-delivered-id"].decode() == last_id.decode()  # everything read, everything acknowledged
