"""Forwarding change events to Redis Streams (docs/forwarding.md): every event once in its stream,
in order; with Redis stopped and started again nothing is lost and the listener's position
waits for it."""

import asyncio
import json
import shutil
import subprocess
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pgnotify.forwarding import RedisStreamForwarder
from pgnotify.listener.notification import Notification
from tests.helpers.brokers import position_covers, start_listener, stream_events, write_rows
from tests.helpers.faults import RecordingSink
from tests.helpers.support import MACHINE_REDIS, free_port
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.once


class PrivateRedis:
    """A redis-server of this test on a free port, keeping its data in `directory` across restarts."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.process.stdout:  # waits on the server's own log, not on a timer
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """SHUTDOWN SAVE: the server writes its data to disk and exits (a restart loads it)."""
        if self.process and self.process.poll() is None:
            client = redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))
            try:
                client.shutdown(save=True)
            except redis.ConnectionError:
                pass  # the server closes the connection as it exits
            finally:
                client.close()
            self.process.wait(10)
            self.process.stdout.close()


@pytest.mark.django_db(transaction=True)
async def test_every_event_appears_once_in_its_stream_in_order(machine_redis):
    client, prefix = machine_redis
    sink = RecordingSink()
    forwarder = RedisStreamForwarder(url=MACHINE_REDIS, prefix=prefix)
    _, stop, task = start_listener(f"fwd-{uuid.uuid4().hex[:8]}", ["orders", "products"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        assert await write_rows(60, products=15, prefix=prefix) == 135
        await sink.wait_for(lambda: len(sink.events()) == 135)
        await eventually_async(lambda: forwarder.written == 135)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    for channel, count in (("orders", 120), ("products", 15)):
        handed = [n.event for n in sink.events() if n.channel == channel]
        entries = stream_events(client, prefix + channel)
        assert len(entries) == len(handed) == count
        assert [int(e["id"]) for e in entries] == [event["id"] for event in handed]  # once each, in order
        assert [json.loads(e["payload"]) for e in entries] == handed
        assert {e["channel"] for e in entries} == {channel}


async def test_streams_are_trimmed_to_maxlen(machine_redis):
    client, prefix = machine_redis
    forwarder = RedisStreamForwarder(url=MACHINE_REDIS, prefix=prefix, maxlen=5, approximate=False)
    try:
        for i in range(8):
            await forwarder.handle(Notification("orders", json.dumps({"id": i, "txid": i})))
        assert client.xlen(prefix + "orders") == 0  # buffered until the listener's flush
        await forwarder.flush()
    finally:
        await forwarder.close()
    assert [int(e["id"]) for e in stream_events(client, prefix + "orders")] == [3, 4, 5, 6, 7]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
async def test_nothing_is_lost_while_redis_is_stopped(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    name = f"fwd-down-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    forwarder = RedisStreamForwarder(url=server.url, prefix="pgnotify:", timeout=2.0)
    listener, stop, task = start_listener(name, ["orders"], [sink, forwarder])
    lane = listener.sink.lanes[1]
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        before = await write_rows(10)
        await sink.wait_for(lambda: len(sink.events()) == before)
        await eventually_async(lambda: forwarder.written == before)

        server.stop()
        total = before + await write_rows(15)
        await sink.wait_for(lambda: len(sink.events()) == total)  # the other handler goes on
        await eventually_async(lambda: lane.attempt >= 3)  # several checkpoints have failed to flush
        down_ids = [n.event["id"] for n in sink.events()[before:]]
        assert await asyncio.to_thread(position_covers, name, down_ids) == 0  # the position waits

        server.start()
        await eventually_async(lambda: forwarder.written == total, within=15)
        await eventually_async(lambda: position_covers(name, down_ids) == len(down_ids))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
        server.stop()
    server.start()  # read what the server kept, after one more restart
    client = redis.Redis(port=server.port)
    try:
        entries = stream_events(client, "pgnotify:orders")
    finally:
        client.close()
        server.stop()
    assert [int(e["id"]) for e in entries] == [n.event["id"] for n in sink.events()]
