"""End-to-end latency: a committed row to the `changes` frame at dashboard websocket clients,
through daphne, `listen_notify` and the channel layer, at a fixed write rate."""

import asyncio
import gc
import json
import sys
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from bench.dashboards import DashboardPool, Tally
from bench.stack import ROOT, WebStack

WARM_UP_TIMEOUT = 60.0


@dataclass
class Source:
    """Where change events come from: rows of `table`, written by the `writer` module's process."""

    table: str = "shop_order"
    writer: str = "bench.load"  # pgnotify: INSERTs on a watched table; the listener does the rest
    env: dict | None = None


PGNOTIFY = Source()


def max_pk(database_url: str, table: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        query = sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier(table))
        return conn.execute(query).fetchone()[0]


async def run_writer(args: list[str], env: dict | None = None) -> dict:
    """A writer process (bench.load or a peer's); returns what it printed as its last line."""
    process = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"writer {args[:2]} exited with {process.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def warm_up(pool: DashboardPool, source: Source, database_url: str) -> None:
    """Writes a few rows at a time until every dashboard has seen a `changes` frame. One writer at
    a time, each finished before the next: no warm-up row is written once measuring starts."""
    deadline = time.monotonic() + WARM_UP_TIMEOUT
    while True:
        await run_writer(["-m", source.writer, database_url, "4", "0.5"], source.env)
        try:
            await pool.wait_warm(1.0)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def summary(tally: Tally, pool: DashboardPool, written: dict, rate: float) -> dict:
    """Latency from each row's commit (the headline) and from its event's ts (the trigger's time,
    before the commit: it also counts the commit itself)."""
    committed = dict(written["commits"])
    latencies = sorted(received - committed[pk] for pk, received in tally.arrivals if pk in committed)
    from_trigger = sorted(tally.latencies)
    expected = written["written"] * len(pool.dashboards)
    ms = lambda value: None if value is None else round(value * 1000, 2)  # noqa: E731
    return {
        "rate": rate, "achieved_rate": round(written["written"] / written["seconds"], 1),
        "clients": len(pool.dashboards), "written": written["written"],
        "delivered_ratio": round(pool.delivered() / expected, 5) if expected else None,
        "p50_ms": ms(percentile(latencies, 0.50)), "p90_ms": ms(percentile(latencies, 0.90)),
        "p99_ms": ms(percentile(latencies, 0.99)), "max_ms": ms(latencies[-1] if latencies else None),
        "p50_from_trigger_ms": ms(percentile(from_trigger, 0.50)),
        "p99_from_trigger_ms": ms(percentile(from_trigger, 0.99)),
    }


async def measure(stack: WebStack, database_url: str, rate: float, clients: int, seconds: float,
                  source: Source = PGNOTIFY, drain_timeout: float = 10.0) -> dict:
    """`clients` dashboards on `stack`, changes written at `rate` rows/s for `seconds`."""
    tally = Tally(source.table)
    async with DashboardPool(stack.dashboard_url, stack.cookie, stack.base, clients, tally) as pool:
        await warm_up(pool, source, database_url)
        tally.after_pk = max_pk(database_url, source.table)
        # The clients' own collector pauses are not the stack's latency (a full collection of this
        # process took up to 110 ms after the WAL figures); the stack runs in other processes, collecting.
        gc.collect()
        gc.disable()
        try:
            written = await run_writer(["-m", source.writer, database_url, str(rate), str(seconds)], source.env)
            await pool.wait_received(written["written"], drain_timeout)
        finally:
            gc.enable()
    return summary(tally, pool, written, rate)


def run_points(stack: WebStack, database_url: str, points, source: Source = PGNOTIFY) -> list[dict]:
    """Measures each (rate, clients, seconds) in turn on one running stack."""
    return [asyncio.run(measure(stack, database_url, rate, clients, seconds, source))
            for rate, clients, seconds in points]
