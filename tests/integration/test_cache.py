"""Tag-based caching invalidated by the listener (docs/cache.md).

Two separate processes share the cache (Redis, and the database cache): A caches a value read
from the database, a write made with plain SQL outside Django fires the statement trigger, a
real `listen_notify` bumps the tag, and B sees fresh data. The invalidation latency (COMMIT
issued to B's first fresh read) is measured over 50 writes. Also: reads bypass the cache
while no listener is live, missed invalidations cannot survive a listener's return, and a
TRUNCATE or a bulk UPDATE sends exactly one notification."""

import json
import statistics
import time
import uuid

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections
from django.test import override_settings

from pgnotify import cache
from pgnotify.cache import acached, cached, cached_function, invalidate, listener_live
from pgnotify.handlers.cache import CacheInvalidator
from pgnotify.listener.notification import Notification
from tests.helpers.faults import record_figures
from tests.helpers.support import ManagedProcess, database_url_for_tests, process_env

WRITES = 50
LIVE = {"type": "listener", "state": "live", "name": "t", "reconnects": 0}
LOST = {"type": "listener", "state": "lost", "name": "t", "reconnects": 0}

# Process A: waits for the listener's heartbeat, then caches the product's stock.
CACHE_ONCE = """
import json, os, time
from pgnotify.cache import cached, listener_live
from notifyproject.shop.models import Product
deadline = time.monotonic() + 15
while not listener_live() and time.monotonic() < deadline:
    time.sleep(0.02)
sku = os.environ["CACHE_TEST_SKU"]
calls = []
value = cached("test:stock:" + sku, ["catalog"], lambda: calls.append(1) or Product.objects.get(sku=sku).stock)
print(json.dumps({"value": value, "computed": bool(calls), "live": listener_live()}), flush=True)
"""

# Process B: reads on request; "wait N" reads until the value is N and reports when.
READER = """
import json, os, sys, time
from pgnotify.cache import cached
from notifyproject.shop.models import Product
sku = os.environ["CACHE_TEST_SKU"]
computes = [0]

def stock():
    computes[0] += 1
    return Product.objects.get(sku=sku).stock

def read():
    before = computes[0]
    return cached("test:stock:" + sku, ["catalog"], stock), computes[0] > before

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "read":
        value, computed = read()
        print(json.dumps({"value": value, "computed": computed}), flush=True)
    elif command == "wait":
        want, deadline, polls = int(argument), time.monotonic() + 10, 0
        while True:
            value, computed = read()
            polls += 1
            if value == want or time.monotonic() > deadline:
                break
            time.sleep(0.001)  # a poll per millisecond: the resolution of the measurement
        print(json.dumps({"value": value, "fresh_at": time.monotonic(), "polls": polls,
                          "computes": computes[0]}), flush=True)
"""


def json_line(process: ManagedProcess, index: int, timeout: float = 15.0) -> dict:
    """The index-th JSON line of a process's stdout, waited for."""
    def ready(lines):
        objects = [line for line in lines if line.startswith("{")]
        return json.loads(objects[index]) if len(objects) > index else None

    return process.wait_for(ready, timeout=timeout)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@pytest.fixture
def redis_available():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", ["database", "redis"])
def test_two_processes_share_the_cache_and_see_fresh_data_after_a_raw_sql_write(backend, listener, request):
    if backend == "redis":
        request.getfixturevalue("redis_available")
    run = uuid.uuid4().hex[:10]
    sku = f"cache-{run}"
    extra = {"CACHE_TEST_SKU": sku, "REDIS_URL": ""}
    if backend == "redis":
        extra.update(REDIS_URL="redis://127.0.0.1:6379/0", CACHE_KEY_PREFIX=f"test-{run}",
                     CHANNEL_LAYER_PREFIX=f"test-{run}")
    env = process_env(**extra)
    with psycopg.connect(database_url_for_tests(), autocommit=True) as writer:
        writer.execute("INSERT INTO shop_product (sku, name, stock) VALUES (%s, 'cached', 0)", [sku])
        listening = listener(env=env)
        a = ManagedProcess("shell", "--no-imports", "-c", CACHE_ONCE, env=env)
        b = None
        try:
            first = json_line(a, 0)
            assert first == {"value": 0, "computed": True, "live": True}
            b = ManagedProcess("shell", "--no-imports", "-c", READER, env=env, stdin=True)
            json_line(b, 0)
            b.proc.stdin.write("read\n")
            b.proc.stdin.flush()
            assert json_line(b, 1) == {"value": 0, "computed": False}  # A's value, from the shared cache

            latencies = []
            for i in range(1, WRITES + 1):
                b.proc.stdin.write(f"wait {i}\n")
                b.proc.stdin.flush()
                committed = time.monotonic()
                writer.execute("UPDATE shop_product SET stock = stock + 1 WHERE sku = %s", [sku])
                reply = json_line(b, 1 + i)
                assert reply["value"] == i, (reply, listening.stderr_lines[-10:])
                latencies.append((reply["fresh_at"] - committed) * 1000)
            # B computed once per write and read the cache otherwise: what was measured is the
            # invalidation, not a bypass.
            assert reply["computes"] == WRITES
        finally:
            a.stop()
            if b is not None:
                b.stop()
    figures = {"writes": WRITES, "p50_ms": round(percentile(latencies, 0.5), 2),
               "p99_ms": round(percentile(latencies, 0.99), 2), "max_ms": round(max(latencies), 2),
               "mean_ms": round(statistics.fmean(latencies), 2)}
    record_figures(f"cache_invalidation_{backend}", figures)
    assert figures["p99_ms"] < 1000


@pytest.fixture
def private_cache():
    """The database cache with keys private to this test."""
    caches = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache",
                          "KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}"}}
    with override_settings(CACHES=caches):
        yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_cache")
def test_reads_bypass_the_cache_while_no_listener_is_live_and_missed_writes_do_not_survive():
    source = {"value": "v1"}
    calls = []

    def compute():
        calls.append(source["value"])
        return source["value"]

    def read():
        return cached("bypass", ["catalog"], compute, timeout=60)

    assert not listener_live()
    assert [read(), read(), read()] == ["v1"] * 3
    assert len(calls) == 3  # no heartbeat: computed every time, nothing stored

    invalidator = CacheInvalidator()
    async_to_sync(invalidator.notice)(LIVE)
    assert listener_live()
    assert [read(), read()] == ["v1", "v1"]
    assert len(calls) == 4  # live: computed once, then from the cache

    async_to_sync(invalidator.notice)(LOST)  # the listener's session is gone
    assert not listener_live()
    source["value"] = "v2"  # a write nobody was listening for
    assert [read(), read()] == ["v2", "v2"]
    assert len(calls) == 6

    async_to_sync(invalidator.notice)(LIVE)  # back: the generation bump retires "v1"
    assert [read(), read()] == ["v2", "v2"]
    assert len(calls) == 7

    # A lapsed heartbeat (a listener killed without a word) also means bypass.
    cache.get_cache().delete(cache.HEARTBEAT_KEY)
    read()
    assert len(calls) == 8
    async_to_sync(invalidator.flush)()  # the next checkpoint of the live listener beats again
    read()
    assert len(calls) == 8


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_cache")
def test_invalidator_bumps_tags_from_trigger_and_plain_payloads_and_the_decorator_keys_by_arguments():
    invalidator = CacheInvalidator()
    async_to_sync(invalidator.notice)(LIVE)
    calls = []

    @cached_function(tags=["users"], timeout=60)
    def greeting(name, punctuation="!"):
        calls.append(name)
        return f"hello {name}{punctuation}"

    assert greeting("ana") == greeting("ana") == "hello ana!"
    assert greeting("bo", punctuation="?") == "hello bo?"
    assert calls == ["ana", "bo"]

    other = []
    assert cached("catalog-only", ["catalog"], lambda: other.append(1) or "c") == "c"

    def handled(payload: str) -> None:
        async def run():
            await invalidator.handle(Notification("cache_invalidate", payload))
            await invalidator.flush()

        async_to_sync(run)()

    handled("users")  # the brief's plain-text form
    assert greeting("ana") == "hello ana!" and calls == ["ana", "bo", "ana"]
    handled(json.dumps({"table": "auth_user", "op": "UPDATE", "tags": ["users"]}))  # the trigger's form
    greeting("ana")
    assert calls[-1] == "ana" and len(calls) == 4
    cached("catalog-only", ["catalog"], lambda: other.append(1) or "c")
    assert other == [1]  # another tag's values are untouched
    invalidate(["catalog"])
    cached("catalog-only", ["catalog"], lambda: other.append(1) or "c")
    assert other == [1, 1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_cache")
async def test_async_variant_and_async_decorator():
    invalidator = CacheInvalidator()
    await invalidator.notice(LIVE)
    calls = []

    async def compute():
        calls.append(1)
        return {"n": 1}

    assert await acached("async-key", ["catalog"], compute) == {"n": 1}
    assert await acached("async-key", ["catalog"], compute) == {"n": 1}
    assert calls == [1]

    @cached_function(tags=["catalog"])
    async def double(x):
        calls.append(x)
        return 2 * x

    assert await double(4) == await double(4) == 8
    assert calls == [1, 4]
    await invalidator.handle(Notification("cache_invalidate", json.dumps({"tags": ["catalog"]})))
    await invalidator.flush()
    assert await double(4) == 8 and calls == [1, 4, 4]
    await sync_to_async(connections.close_all)()  # the worker thread's connection, before the test db goes


def count_until_marker(listen: psycopg.Connection, marker: str) -> list[dict]:
    """The cache_invalidate notifications received before `marker`."""
    received = []
    for notify in listen.notifies(timeout=10):
        if notify.payload == marker:
            return received
        received.append(json.loads(notify.payload))
    raise AssertionError(f"marker {marker} not received; got {received}")


@pytest.mark.django_db(transaction=True)
def test_bulk_update_and_truncate_each_send_exactly_one_notification():
    url = database_url_for_tests()
    with psycopg.connect(url, autocommit=True) as listen, psycopg.connect(url, autocommit=True) as writer:
        listen.execute("LISTEN cache_invalidate")
        writer.execute("INSERT INTO shop_product (sku, name) "
                       "SELECT 'bulk-' || g, 'bulk' FROM generate_series(1, 300) g")
        writer.execute("NOTIFY cache_invalidate, 'marker-1'")
        assert [n["op"] for n in count_until_marker(listen, "marker-1")] == ["INSERT"]

        result = writer.execute("UPDATE shop_product SET stock = stock + 1 WHERE name = 'bulk'")
        assert result.rowcount == 300
        writer.execute("NOTIFY cache_invalidate, 'marker-2'")
        assert count_until_marker(listen, "marker-2") == [
            {"table": "shop_product", "op": "UPDATE", "tags": ["catalog"]}]

        writer.execute("TRUNCATE shop_product CASCADE")
        writer.execute("NOTIFY cache_invalidate, 'marker-3'")
        assert count_until_marker(listen, "marker-3") == [
            {"table": "shop_product", "op": "TRUNCATE", "tags": ["catalog"]}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_cache")
def test_catalog_page_is_served_from_the_cache_until_a_product_changes(client):
    from notifyproject.shop.models import Product

    Product.objects.create(sku="page-1", name="Teapot", price="12.50")
    async_to_sync(CacheInvalidator().notice)(LIVE)
    first, second = client.get("/catalog/"), client.get("/catalog/")
    assert b'data-from-cache="false"' in first.content and b"Teapot" in first.content
    assert b'data-from-cache="true"' in second.content
    Product.objects.filter(sku="page-1").update(name="Kettle")  # the trigger's tag, bumped by hand here
    invalidate(["catalog"])
    third = client.get("/catalog/")
    assert b'data-from-cache="false"' in third.content and b"Kettle" in third.content
