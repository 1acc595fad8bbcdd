"""pgnotify benchmarks: every figure is measured in the same run as its baseline.

    make bench            # or: .venv/bin/python -m bench.run [--quick]

Writes bench/results.json and bench/results.md. Uses DATABASE_URL, else the embedded server,
in a database of its own (pgnotify_bench), migrated afresh.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pgnotify.listener import Listener, ListenerOptions  # noqa: E402

BENCH_DB = "pgnotify_bench"


class CountingSink:
    """A no-op sink that records when the n-th notification arrived."""

    def __init__(self, expected: int):
        self.expected, self.count = expected, 0
        self.first = self.last = None
        self.done = asyncio.Event()

    async def handle(self, notification):
        self.count += 1
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        if self.count >= self.expected:
            self.last = now
            self.done.set()

    async def notice(self, notice):
        pass

    async def flush(self):
        pass


def base_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        from notifyproject import embedded_db

        url = embedded_db.database_url()
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def prepare(url: str) -> str:
    admin = conninfo_to_dict(url)
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    bench_url = with_database(url, BENCH_DB)
    env = {**os.environ, "DATABASE_URL": bench_url}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_plain (LIKE shop_order INCLUDING DEFAULTS)")
        conn.execute("ALTER TABLE bench_plain ADD PRIMARY KEY (id)")
        conn.execute("CREATE SEQUENCE bench_plain_id_seq OWNED BY bench_plain.id")
        conn.execute("ALTER TABLE bench_plain ALTER id SET DEFAULT nextval('bench_plain_id_seq')")
    return bench_url


def insert_rows(url: str, table: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} (quantity) SELECT 1 FROM generate_series(1, %s)", [count])


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


async def listener_drain(url: str, count: int, name: str) -> float:
    """Events/s through pgnotify's Listener (parse, de-duplication, statistics) into a no-op sink."""
    sink = CountingSink(count)
    stop = asyncio.Event()
    listener = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name), sink)
    task = asyncio.create_task(listener.run(stop))
    while listener.stats.state != "live":
        await asyncio.sleep(0.01)
    await asyncio.to_thread(insert_rows, url, "shop_order", count)
    await asyncio.wait_for(sink.done.wait(), 120)
    stop.set()
    await task
    return (count - 1) / (sink.last - sink.first)


async def replay_rate(url: str, count: int, name: str) -> float:
    """Events/s replayed from the log for a listener that was away while `count` rows were written."""
    warm = Listener(conninfo_to_dict(url), ListenerOptions(channels=["orders"], name=name), CountingSink(1))
    stop = asyncio.Event()
    task = asyncio.create_task(warm.run(stop))
    while warm.stats.state != "live":
        await asyncio.sleep(0.01)
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


def insert_tps(url: str, table: str, writers: int, seconds: float) -> float:
    """Single-row autocommit INSERTs per second with `writers` concurrent connections."""
    counts = [0] * writers
    deadline = time.perf_counter() + seconds

    def write(index):
        with psycopg.connect(url, autocommit=True) as conn:
            statement = f"INSERT INTO {table} DEFAULT VALUES"
            while time.perf_counter() < deadline:
                conn.execute(statement)
                counts[index] += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def bulk_update_seconds(url: str, table: str, rows: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table} CASCADE")
        conn.execute(f"INSERT INTO {table} (quantity) SELECT 1 FROM generate_series(1, %s)", [rows])
        start = time.perf_counter()
        conn.execute(f"UPDATE {table} SET quantity = quantity + 1")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    drain_n, replay_n, bulk_n = int(50_000 * scale), int(100_000 * scale), int(100_000 * scale)
    seconds = 2.0 if args.quick else 5.0

    url = prepare(base_url())
    with psycopg.connect(url) as conn:
        server_version = conn.info.server_version
    results = {}

    raw = asyncio.run(raw_drain(url, drain_n))
    through_listener = asyncio.run(listener_drain(url, drain_n, "bench-drain"))
    results["raw_loop_events_per_s"] = round(raw)
    results["listener_events_per_s"] = round(through_listener)
    results["listener_vs_raw_ratio"] = round(through_listener / raw, 3)

    results["replay_events_per_s"] = round(asyncio.run(replay_rate(url, replay_n, "bench-replay")))

    for writers in (1, 8):
        plain = insert_tps(url, "bench_plain", writers, seconds)
        watched = insert_tps(url, "shop_order", writers, seconds)
        results[f"plain_insert_tps_{writers}_writers"] = round(plain)
        results[f"watched_insert_tps_{writers}_writers"] = round(watched)
        key = "write_overhead_1_writer" if writers == 1 else "write_overhead_8_writers"
        results[key] = round(1 - watched / plain, 3)

    plain_s = bulk_update_seconds(url, "bench_plain", bulk_n)
    watched_s = bulk_update_seconds(url, "shop_order", bulk_n)
    results["bulk_update_rows"] = bulk_n
    results["bulk_update_ratio"] = round(watched_s / plain_s, 2)

    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, PostgreSQL {server_version // 10000}"
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (ROOT / "bench" / "results.md").write_text(table)
    print(table)


TARGETS = [
    ("listener_vs_raw_ratio", "≥ 0.5", "events/s through the listener ÷ bare psycopg loop ({listener_events_per_s} ÷ {raw_loop_events_per_s})"),
    ("replay_events_per_s", "≥ 20,000", "catch-up from the event log after an outage"),
    ("write_overhead_1_writer", "≤ 0.20", "1 − watched/plain INSERT tps, 1 writer ({watched_insert_tps_1_writers} vs {plain_insert_tps_1_writers})"),
    ("write_overhead_8_writers", "report", "the same, 8 writers ({watched_insert_tps_8_writers} vs {plain_insert_tps_8_writers})"),
    ("bulk_update_ratio", "≤ 2.0", "UPDATE of {bulk_update_rows} rows, watched ÷ unwatched time"),
]


def markdown(results: dict) -> str:
    lines = [f"Measured {results['date']} on {results['machine']}.", "",
             "| figure | target | measured | what |", "|---|---|---|---|"]
    for key, target, what in TARGETS:
        lines.append(f"| `{key}` | {target} | {results[key]:,} | {what.format(**results)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
