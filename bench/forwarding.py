"""Forwarders: change events through the listener into each destination, confirmed, against the
destination's own client publishing the same messages with the same confirmations in the same
run; and the latency from a row's commit to a consumer of the destination at 1,000 changes/s.

Uses the machine's Redis (6379), RabbitMQ (5672) and NATS (4222), and a webhook receiver of its
own; a destination that is not there is reported as skipped.
"""

import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from bench import throughput
from bench.e2e import percentile, run_writer
from bench.throughput import _until_live

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
ROOT = Path(__file__).resolve().parent.parent
SINKS = ("redis_streams", "webhook", "rabbitmq", "jetstream")
LATENCY_RATE = 1000


class Tap:
    """First handler of the dispatcher: notes when the first event arrived and keeps the bodies."""

    def __init__(self):
        self.first = None
        self.bodies: list[bytes] = []

    async def handle(self, notification) -> None:
        if notification.event is not None:
            self.first = self.first or time.perf_counter()
            self.bodies.append(notification.payload.encode())


# -- each destination: a forwarder, a bare client doing the same, and a consumer


class Receiver:
    """A webhook receiver in a process of its own (aiohttp); one line "pk time" per event it is
    posted, read into `arrivals` by a thread."""

    def __init__(self):
        with socket.socket() as sock:  # a free port
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.arrivals: list[tuple[int, float]] = []
        self.process = subprocess.Popen([sys.executable, "-m", "bench.forwarding", "receive", str(self.port)],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready", "the webhook receiver did not start"
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _read(self) -> None:
        with self.process.stdout:
            for line in self.process.stdout:
                pk, at = line.split()
                self.arrivals.append((int(pk), float(at)))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.thread.join(5)


def receive(port: int) -> None:
    from aiohttp import web

    async def hook(request):
        body = await request.read()
        print(json.loads(body)["pk"], time.time())
        return web.Response()

    async def serve():
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    sys.stdout.reconfigure(line_buffering=True)  # a line per request, as it comes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(serve())


class Destination:
    """One sink's forwarder, baseline and consumer, on names of this run."""

    def __init__(self, sink: str):
        self.sink = sink
        self.tag = f"bench{uuid.uuid4().hex[:8]}"
        self.receiver = Receiver() if sink == "webhook" else None

    def forwarder(self):
        from pgnotify import forwarding

        if self.sink == "redis_streams":
            return forwarding.RedisStreamForwarder(url=REDIS_URL, prefix=f"{self.tag}:", maxlen=None)
        if self.sink == "webhook":
            return forwarding.Webhook(url=self.receiver.url, secret="bench-secret-0123456789")
        if self.sink == "rabbitmq":
            return forwarding.RabbitMQ(url=AMQP_URL, exchange=self.tag, declare=True)
        return forwarding.JetStream(url=NATS_URL, prefix=self.tag, stream=self.tag, create_stream=True)

    async def baseline(self, bodies: list[bytes]) -> float:
        """Events/s of the destination's own client on the same bodies: the same batches (1,000,
        one request at a time for webhooks), each confirmed before the next."""
        started = time.perf_counter()
        if self.sink == "redis_streams":
            import redis.asyncio as redis

            client = redis.Redis.from_url(REDIS_URL)
            for chunk in _chunks(bodies, 1000):
                pipe = client.pipeline(transaction=False)
                for body in chunk:
                    pipe.xadd(f"{self.tag}:baseline", {"id": "0", "channel": "orders", "payload": body})
                await pipe.execute()
            elapsed = time.perf_counter() - started
            await client.aclose()
        elif self.sink == "webhook":
            import aiohttp

            async with aiohttp.ClientSession() as session:
                started = time.perf_counter()
                for body in bodies:
                    async with session.post(self.receiver.url, data=body,
                                            headers={"Content-Type": "application/json"}) as response:
                        response.raise_for_status()
                elapsed = time.perf_counter() - started
        elif self.sink == "rabbitmq":
            import aio_pika

            async with await aio_pika.connect(AMQP_URL) as connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.declare_exchange(self.tag, "topic", durable=True)
                started = time.perf_counter()
                for chunk in _chunks(bodies, 1000):
                    await asyncio.gather(*(exchange.publish(aio_pika.Message(
                        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(i)),
                        "orders.shop_order.INSERT") for i, body in enumerate(chunk)))
                elapsed = time.perf_counter() - started
        else:
            import nats

            client = await nats.connect(NATS_URL)
            js = client.jetstream()
            started = time.perf_counter()
            for chunk in _chunks(bodies, 1000):
                futures = [await js.publish_async(f"{self.tag}.orders.shop_order.INSERT", body,
                                                  headers={"Nats-Msg-Id": f"b{started}-{i}"})
                           for i, body in enumerate(chunk)]
                await asyncio.gather(*futures)
            elapsed = time.perf_counter() - started
            await client.close()
        return len(bodies) / elapsed

    async def consume(self, arrivals: list, ready: threading.Event, stop: threading.Event) -> None:
        """Note (pk, arrival time) of every change event the destination delivers to a consumer."""
        def note(body: bytes) -> None:
            arrivals.append((json.loads(body)["pk"], time.time()))

        if self.sink == "redis_streams":
            import redis.asyncio as redis

            client = redis.Redis.from_url(REDIS_URL)
            last = "$"
            ready.set()
            while not stop.is_set():
                for _, entries in await client.xread({f"{self.tag}:orders": last}, block=200) or []:
                    for entry_id, fields in entries:
                        note(fields[b"payload"])
                        last = entry_id
            await client.aclose()
        elif self.sink == "rabbitmq":
            import aio_pika

            async with await aio_pika.connect(AMQP_URL) as connection:
                channel = await connection.channel()
                exchange = await channel.declare_exchange(self.tag, "topic", durable=True)
                queue = await channel.declare_queue(exclusive=True)
                await queue.bind(exchange, "orders.#")

                async def on_message(message):
                    note(message.body)
                    await message.ack()

                await queue.consume(on_message)
                ready.set()
                while not stop.is_set():  # noqa: ASYNC110 - stop is a threading.Event
                    await asyncio.sleep(0.05)
        elif self.sink == "jetstream":
            import nats
            from nats.js.api import DeliverPolicy

            client = await nats.connect(NATS_URL)

            async def on_message(message):
                note(message.data)
                await message.ack()

            await client.jetstream().subscribe(f"{self.tag}.orders.>", cb=on_message, stream=self.tag,
                                               deliver_policy=DeliverPolicy.NEW, manual_ack=True)
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110 - stop is a threading.Event
                await asyncio.sleep(0.05)
            await client.close()

    async def clean_up(self) -> None:
        if self.sink == "redis_streams":
            import redis.asyncio as redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in [key async for key in client.scan_iter(match=f"{self.tag}:*")]:
                await client.delete(key)
            await client.aclose()
        elif self.sink == "rabbitmq":
            import aio_pika

            async with await aio_pika.connect(AMQP_URL) as connection:
                channel = await connection.channel()
                await channel.exchange_delete(self.tag)
        elif self.sink == "jetstream":
            import nats

            client = await nats.connect(NATS_URL)
            await client.jetstream().delete_stream(self.tag)
            await client.close()
        if self.receiver is not None:
            self.receiver.close()


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- measuring


async def forward_rate(url: str, destination: Destination, count: int, name: str) -> tuple[float, list[bytes]]:
    """Events/s from the first event's arrival at the dispatcher to the destination's confirmation
    of the last one; and the bodies, for the baseline."""
    from pgnotify.handlers.dispatcher import Dispatcher
    from pgnotify.listener import Listener, ListenerOptions

    tap, forwarder = Tap(), destination.forwarder()
    stop = asyncio.Event()
    listener = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name),
                        Dispatcher([tap, forwarder]))
    task = asyncio.create_task(listener.run(stop))
    try:
        await asyncio.wait_for(_until_live(listener), 30)
        await asyncio.to_thread(throughput.insert_rows, url, "shop_order", count)
        await asyncio.wait_for(_confirmed(forwarder, count), 300)
        done = time.perf_counter()
    finally:
        stop.set()
        await task
        await forwarder.close()
    return count / (done - tap.first), tap.bodies


async def _confirmed(forwarder, count: int) -> None:
    while forwarder.forwarded < count:  # noqa: ASYNC110 - a counter of the forwarder's own task
        await asyncio.sleep(0.001)


async def latency(url: str, destination: Destination, seconds: float, name: str) -> dict:
    """Commit → consumer at LATENCY_RATE changes/s: rows written by bench.load in its own process."""
    from pgnotify.handlers.dispatcher import Dispatcher
    from pgnotify.listener import Listener, ListenerOptions

    forwarder = destination.forwarder()
    arrivals: list = []
    ready, done = threading.Event(), threading.Event()
    if destination.receiver is not None:
        consumer = None
        ready.set()
    else:
        consumer = threading.Thread(target=asyncio.run, args=(destination.consume(arrivals, ready, done),),
                                    daemon=True)
    stop = asyncio.Event()
    listener = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name),
                        Dispatcher([forwarder]))
    task = asyncio.create_task(listener.run(stop))
    try:
        await asyncio.wait_for(_until_live(listener), 30)
        await forwarder.handle(_warm_up_event())  # connect (and create the stream) before measuring
        await forwarder.flush()
        if consumer is not None:
            consumer.start()
            assert await asyncio.to_thread(ready.wait, 30), "the consumer did not start"
        written = await run_writer(["-m", "bench.load", url, str(LATENCY_RATE), str(seconds)])
        committed = dict(written["commits"])
        deadline = time.monotonic() + 10
        while _received(destination, arrivals, committed) < len(committed) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        done.set()
        stop.set()
        await task
        await forwarder.close()
        if consumer is not None:
            consumer.join(10)
    pairs = arrivals if destination.receiver is None else list(destination.receiver.arrivals)
    latencies = sorted(at - committed[pk] for pk, at in pairs if pk in committed)
    return {"p50_ms": _ms(percentile(latencies, 0.50)), "p99_ms": _ms(percentile(latencies, 0.99)),
            "delivered_ratio": round(len({pk for pk, _ in pairs if pk in committed}) / len(committed), 5)}


def _received(destination: Destination, arrivals: list, committed: dict) -> int:
    pairs = arrivals if destination.receiver is None else destination.receiver.arrivals
    return sum(1 for pk, _ in list(pairs) if pk in committed)


def _warm_up_event():
    from pgnotify.listener.notification import Notification

    return Notification("orders", json.dumps({"id": 0, "txid": 0, "channel": "orders", "table": "shop_order",
                                              "op": "INSERT", "pk": -1, "row": {}}))


def _ms(value):
    return None if value is None else round(value * 1000, 2)


async def _reachable(sink: str) -> str | None:
    """None when the destination answers, else why not."""
    try:
        if sink == "redis_streams":
            import redis.asyncio as redis

            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
            await client.ping()
            await client.aclose()
        elif sink == "rabbitmq":
            import aio_pika

            await (await aio_pika.connect(AMQP_URL, timeout=2)).close()
        elif sink == "jetstream":
            import nats

            await (await nats.connect(NATS_URL, connect_timeout=1, allow_reconnect=False,
                                      max_reconnect_attempts=0)).close()
        else:
            import aiohttp  # noqa: F401 - the receiver is our own
    except Exception as error:  # ImportError of a missing extra too
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def forwarding_figures(url: str, quick: bool) -> dict:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
    import django

    django.setup()  # the forwarders read settings (REDIS_URL) and log through Django's config
    results = {}
    rounds = 1 if quick else 3
    for sink in SINKS:
        reason = asyncio.run(_reachable(sink))
        if reason:
            results[f"skipped_forward_{sink}"] = reason
            continue
        destination = Destination(sink)
        count = (500 if quick else 5_000) if sink == "webhook" else (3_000 if quick else 20_000)
        try:
            forwards, baselines = [], []
            for round_number in range(rounds):  # alternating rounds, medians
                rate, bodies = asyncio.run(forward_rate(url, destination, count, f"bench-fwd-{sink}-{round_number}"))
                forwards.append(rate)
                baselines.append(asyncio.run(destination.baseline(bodies)))
            forward, baseline = statistics.median(forwards), statistics.median(baselines)
            results[f"forward_{sink}_events_per_s"] = round(forward)
            results[f"forward_{sink}_baseline_events_per_s"] = round(baseline)
            results[f"forward_{sink}_vs_client_ratio"] = round(forward / baseline, 3)
            figures = asyncio.run(latency(url, destination, 3.0 if quick else 10.0, f"bench-lat-{sink}"))
            results.update({f"forward_{sink}_{key}": value for key, value in figures.items()})
        finally:
            asyncio.run(destination.clean_up())
        print(f"forwarding to {sink} measured", flush=True)
    return results


LABELS = {
    "redis_streams": "Redis Streams (pipelines of up to 1,000 XADD)",
    "webhook": "webhook (one POST per event, answered 2xx)",
    "rabbitmq": "RabbitMQ (persistent messages, publisher confirms, up to 1,000 in flight)",
    "jetstream": "NATS JetStream (up to 1,000 acknowledged publishes in flight)",
}
# Rows of bench/results.md (bench/run.py adds them to bench/report.py's TARGETS).
TARGETS = [row for sink, label in LABELS.items() for row in (
    (f"forward_{sink}_vs_client_ratio", "≥ 0.5",
     f"{label}: change events/s through the listener into the destination, confirmed "
     f"({{forward_{sink}_events_per_s}}), ÷ its own client publishing the same messages with the same "
     f"confirmations in the same run ({{forward_{sink}_baseline_events_per_s}})"),
    (f"forward_{sink}_p99_ms", "report",
     f"the same: commit → a consumer of the destination, {LATENCY_RATE:,} changes/s, p99 (p50 "
     f"{{forward_{sink}_p50_ms}} ms; {{forward_{sink}_delivered_ratio}} delivered within 10 s)"),
)]


if __name__ == "__main__":
    if sys.argv[1] == "receive":  # the webhook receiver's process
        receive(int(sys.argv[2]))
    else:  # development: python -m bench.forwarding DATABASE_URL [--quick]
        print(json.dumps(forwarding_figures(sys.argv[1], "--quick" in sys.argv), indent=2))
