"""The WAL source's figures, each beside its baseline measured in the same run.

Unwatched, for the WAL source, is the same table left out of the publication with replica
identity DEFAULT; watched is the table published with replica identity FULL. The writer-path
figures keep a slot present whose consumer is paused (nothing decodes during the burst; on a
bigger server decoding runs on other cores); the `_live` figures run `listen_notify` consuming
live on the same two cores, and the NOTIFY source's watched tps is measured beside, in the
same rounds.
"""

import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench import writes
from bench.stack import ROOT, stack_env
from bench.throughput import CountingSink, _until_live, insert_rows
from pgnotify.listener import ListenerOptions
from pgnotify.listener.receiving import readable
from pgnotify.listener.wal import WalListener, WalTable, WalTarget
from pgnotify.listener.wal.slots import PUBLICATION
from pgnotify.listener.wal.stream import SESSION_OPTIONS, ReplicationStream

PAUSED_SLOT = "pgnotify_bench_paused"
ORDERS = [WalTable("shop_order", targets=(WalTarget("orders", "shop.order"),))]


@contextmanager
def unpublished(url: str, table: str):
    """The table out of the publication, replica identity DEFAULT; put back on exit."""
    name, publication = sql.Identifier(table), sql.Identifier(PUBLICATION)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(publication, name))
        conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY DEFAULT").format(name))
        try:
            yield
        finally:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(name))
            conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(publication, name))


@contextmanager
def paused_slot(url: str):
    """A slot that nobody consumes; moved to the current position on exit (WAL is not kept)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [PAUSED_SLOT])
        try:
            yield
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", [PAUSED_SLOT])


@contextmanager
def live_listener(url: str, source: str):
    """`listen_notify --quiet` of `source` on `url`, running until exit."""
    env = stack_env(url, "none", source=source)
    process = subprocess.Popen([sys.executable, "manage.py", "listen_notify", "--quiet", "--stats-interval", "0",
                                "--name", f"bench-live-{uuid.uuid4().hex[:8]}"], cwd=ROOT, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in process.stdout:
            if ": live" in line:
                break
        else:
            raise RuntimeError(f"listen_notify ({source}) exited with {process.wait()}")
        yield process
    finally:
        process.terminate()
        process.wait(20)


async def raw_stream(url: str, count: int) -> float:
    """Messages/s of a bare loop on the replication stream (no decoding): the ceiling."""
    slot = f"pgnotify_bench_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
    conn = await psycopg.AsyncConnection.connect(url, replication="database", autocommit=True, options=SESSION_OPTIONS)
    try:
        stream = ReplicationStream(conn)
        await stream.start(slot, PUBLICATION, 0)
        await asyncio.to_thread(insert_rows, url, "shop_order", count)
        received, first = 0, None
        while received < count:
            messages = stream.take()
            if not messages:
                await readable(5.0, stream.pgconn.socket)
                messages = stream.poll()
            if messages and first is None:
                first = time.perf_counter()
            received += sum(1 for m in messages if m[0] == 0x77 and m[25] == 0x49)  # XLogData of an Insert
        return (count - 1) / (time.perf_counter() - first)
    finally:
        await conn.close()
        drop_released_slot(url, slot)


def drop_released_slot(url: str, slot: str, timeout: float = 10.0) -> None:
    """Drops `slot` once its walsender has let it go: that ends a moment after the replication
    connection closed (until then the drop is refused: the slot is active)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


async def listener_drain(url: str, count: int, name: str) -> float:
    """Events/s through the WalListener (decoding, events, statistics) into a no-op sink."""
    sink, stop = CountingSink(count), asyncio.Event()
    listener = WalListener(conninfo_to_dict(url), ListenerOptions(channels=["system"], name=name), sink, ORDERS)
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(_until_live(listener), 30)
    await asyncio.to_thread(insert_rows, url, "shop_order", count)
    await asyncio.wait_for(sink.done.wait(), 300)
    stop.set()
    await task
    return (count - 1) / (sink.last - sink.first)


async def catch_up_rate(url: str, count: int, name: str) -> float:
    """Events/s of a WalListener that was away while `count` rows were written: from its start."""
    options = ListenerOptions(channels=["system"], name=name)
    warm, stop = WalListener(conninfo_to_dict(url), options, CountingSink(1), ORDERS), asyncio.Event()
    task = asyncio.create_task(warm.run(stop))
    await asyncio.wait_for(_until_live(warm), 30)
    stop.set()
    await task
    await asyncio.to_thread(insert_rows, url, "shop_order", count)
    sink, stop = CountingSink(count), asyncio.Event()
    listener = WalListener(conninfo_to_dict(url), options, sink, ORDERS)
    started = time.perf_counter()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(sink.done.wait(), 300)
    elapsed = sink.last - started
    stop.set()
    await task
    return count / elapsed


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def drop_bench_slots(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE database = current_database() AND NOT active")


def wal_figures(wal_url: str, notify_url: str, quick: bool) -> dict:
    scale = 0.1 if quick else 1.0
    drain_n, catch_up_n, bulk_n = int(50_000 * scale), int(100_000 * scale), int(100_000 * scale)
    seconds, rounds = (1.0, 2) if quick else (2.0, 4)
    results = {}
    with paused_slot(wal_url):
        for count in (1, 8):
            plain, watched = writes.insert_tps_pair(wal_url, "shop_order", count, seconds, rounds, unpublished)
            results[f"plain_insert_tps_{count}_writers_wal"] = round(plain)
            results[f"watched_insert_tps_{count}_writers_wal"] = round(watched)
            results[f"write_overhead_{count}_writer{'s' if count > 1 else ''}_wal"] = round(1 - watched / plain, 3)
        plain_s, watched_s = writes.bulk_update_pair(wal_url, "shop_order", bulk_n, 2 if quick else 3, unpublished)
    results["bulk_update_plain_s_wal"], results["bulk_update_watched_s_wal"] = round(plain_s, 3), round(watched_s, 3)
    results["bulk_update_ratio_wal"] = round(watched_s / plain_s, 2)
    # Live: each source's listener consuming on these two cores while 8 writers insert.
    live_wal, live_notify, live_plain, quiet_cpu = [], [], [], []
    with live_listener(wal_url, "wal") as wal_process, live_listener(notify_url, "notify"):
        for _ in range(rounds):
            with unpublished(wal_url, "shop_order"):
                # The WAL listener while only unwatched rows are written: it reads the server's keepalives.
                cpu_before, started = cpu_seconds(wal_process.pid), time.perf_counter()
                live_plain.append(writes.insert_tps(wal_url, "shop_order", 8, seconds))
                quiet_cpu.append((cpu_seconds(wal_process.pid) - cpu_before) / (time.perf_counter() - started))
            live_wal.append(writes.insert_tps(wal_url, "shop_order", 8, seconds))
            live_notify.append(writes.insert_tps(notify_url, "shop_order", 8, seconds))
    wal_tps, notify_tps, plain_tps = map(statistics.median, (live_wal, live_notify, live_plain))
    results.update(watched_insert_tps_8_writers_wal_live=round(wal_tps),
                   watched_insert_tps_8_writers_notify_live=round(notify_tps),
                   plain_insert_tps_8_writers_wal_live=round(plain_tps),
                   write_overhead_8_writers_wal_live=round(1 - wal_tps / plain_tps, 3),
                   wal_vs_notify_8_writers_tps=round(wal_tps / notify_tps, 2),
                   wal_listener_cpu_quiet_tables=round(statistics.median(quiet_cpu), 3))
    raws, drains = [], []
    for round_number in range(2 if quick else 3):
        raws.append(asyncio.run(raw_stream(wal_url, drain_n)))
        drains.append(asyncio.run(listener_drain(wal_url, drain_n, f"bench-wal-drain-{round_number}")))
    results["wal_raw_stream_events_per_s"] = round(statistics.median(raws))
    results["wal_listener_events_per_s"] = round(statistics.median(drains))
    results["wal_catch_up_events_per_s"] = round(asyncio.run(catch_up_rate(wal_url, catch_up_n, "bench-wal-catch-up")))
    drop_bench_slots(wal_url)
    return results


def wal_e2e_figures(e2e_url: str, quick: bool) -> dict:
    """Commit → dashboard frame with the WAL source: 1,000 changes/s, 100 dashboards, Redis layer."""
    from bench.e2e import run_points
    from bench.stack import WebStack, redis_reachable
    from bench.web import CLIENTS, HEADLINE_RATE

    if not redis_reachable():
        return {"skipped_e2e_wal": "Redis is not reachable at 127.0.0.1:6379"}
    with WebStack(e2e_url, "redis", source="wal") as stack:
        (point,) = run_points(stack, e2e_url, [(HEADLINE_RATE, CLIENTS, 3 if quick else 10)])
    drop_bench_slots(e2e_url)
    return {"e2e_p50_ms_wal": point["p50_ms"], "e2e_p99_ms_wal": point["p99_ms"],
            "e2e_delivered_ratio_wal": point["delivered_ratio"]}
