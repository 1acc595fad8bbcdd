"""pgnotify benchmarks: every figure is measured in the same run as its baseline.

    make bench            # or: .venv/bin/python -m bench.run [--quick]

Writes bench/results.json, bench/results.md and docs/e2e-latency.png. Uses DATABASE_URL, else the
embedded server, in databases of its own (pgnotify_bench, pgnotify_bench_forward, pgnotify_bench_e2e),
created afresh; the forwarders' figures use the machine's Redis, RabbitMQ and NATS (bench/forwarding.py).
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import chat, database, forwarding, live, report, stack, throughput, wal, writes  # noqa: E402
from bench.peers import peer_figures  # noqa: E402
from bench.report import markdown  # noqa: E402
from bench.web import CLIENTS, web_figures  # noqa: E402

STARTED = time.monotonic()
BENCH_DB = "pgnotify_bench"
E2E_DB = "pgnotify_bench_e2e"
WAL_DB = "pgnotify_bench_wal"  # the same schema migrated for the WAL source
E2E_WAL_DB = "pgnotify_bench_e2e_wal"
FORWARD_DB = "pgnotify_bench_forward"
LIVE_DB = "pgnotify_bench_live"
CHAT_DB = "pgnotify_bench_chat"
report.TARGETS.extend(forwarding.TARGETS)  # the forwarders' rows, after the others


def core_figures(url: str, quick: bool) -> dict:
    """Listener and replay rates, and what the triggers cost writers."""
    scale = 0.1 if quick else 1.0
    drain_n, replay_n, bulk_n = int(50_000 * scale), int(100_000 * scale), int(100_000 * scale)
    seconds = 1.0 if quick else 2.0
    results = {}
    # Alternating rounds, medians: the bare loop's rate swings with the machine's load.
    raws, listeners = [], []
    for round_number in range(2 if quick else 5):
        raws.append(asyncio.run(throughput.raw_drain(url, drain_n)))
        listeners.append(asyncio.run(throughput.listener_drain(url, drain_n, f"bench-drain-{round_number}")))
    raw, through_listener = statistics.median(raws), statistics.median(listeners)
    results["raw_loop_events_per_s"] = round(raw)
    results["listener_events_per_s"] = round(through_listener)
    results["listener_vs_raw_ratio"] = round(through_listener / raw, 3)
    results["replay_events_per_s"] = round(asyncio.run(throughput.replay_rate(url, replay_n, "bench-replay")))
    rounds = 2 if quick else 4
    for writers in (1, 8):
        plain, watched = writes.insert_tps_pair(url, "shop_order", writers, seconds, rounds)
        results[f"plain_insert_tps_{writers}_writers"] = round(plain)
        results[f"watched_insert_tps_{writers}_writers"] = round(watched)
        key = "write_overhead_1_writer" if writers == 1 else "write_overhead_8_writers"
        results[key] = round(1 - watched / plain, 3)
    for kind in ("UPDATE", "DELETE"):  # single-row statements of the other kinds, 1 writer
        plain, watched = writes.statement_tps_pair(url, "shop_order", kind, seconds, rounds, int(200_000 * scale))
        name = kind.lower()
        results[f"plain_{name}_tps_1_writer"], results[f"watched_{name}_tps_1_writer"] = round(plain), round(watched)
        results[f"write_overhead_{name}_1_writer"] = round(1 - watched / plain, 3)
    plain_s, watched_s = writes.bulk_update_pair(url, "shop_order", bulk_n, 2 if quick else 3)
    results["bulk_update_rows"] = bulk_n
    results["bulk_update_plain_s"], results["bulk_update_watched_s"] = round(plain_s, 3), round(watched_s, 3)
    results["bulk_update_ratio"] = round(watched_s / plain_s, 2)
    return results


def cpu_workload_ms() -> float:
    """A fixed pure-Python workload (the bench's own speed on this machine now): best of 3."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        sum(i * i % 7 for i in range(2_000_000))
        times.append(time.perf_counter() - start)
    return round(min(times) * 1000, 1)


def machine_speed(server: str) -> dict:
    """What the machine gives now, printed first: the fixed CPU workload, the bare LISTEN loop and
    the bare NOTIFY round trip (the floor of every latency figure)."""
    url = database.recreate(server, BENCH_DB)
    speed = {"cpu_workload_ms": cpu_workload_ms(),
             "bare_listen_loop_events_per_s": round(asyncio.run(throughput.raw_drain(url, 20_000)))}
    floor = throughput.notify_round_trip_ms(url)
    speed["notify_round_trip_p50_ms"], speed["notify_round_trip_p99_ms"] = floor["p50_ms"], floor["p99_ms"]
    print(f"machine speed: fixed CPU workload {speed['cpu_workload_ms']} ms (less is faster), "
          f"bare LISTEN loop {speed['bare_listen_loop_events_per_s']:,} events/s, bare NOTIFY round trip "
          f"p50 {speed['notify_round_trip_p50_ms']} ms (p99 {speed['notify_round_trip_p99_ms']} ms)", flush=True)
    return speed


def combine(runs: list[dict]) -> dict:
    """The last run's figures, each measured number replaced by its median over the runs, and
    `spread`: [min, median, max] of every figure with a target."""
    results = dict(runs[-1])
    spread = {}
    for key in results:
        values = [run[key] for run in runs if isinstance(run.get(key), int | float) and not isinstance(run[key], bool)]
        if len(values) == len(runs) and len(runs) > 1:
            middle = statistics.median(values)  # of an even count: the mean of the middle two
            results[key] = round(middle) if all(isinstance(v, int) for v in values) else round(middle, 3)
            if key in {target[0] for target in report.TARGETS}:
                spread[key] = [min(values), results[key], max(values)]
    if spread:
        results["spread"] = spread
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs, for a smoke run")
    parser.add_argument("--only", choices=["core", "web", "wal", "forwarding", "live", "chat"],
                        help="run one part; its figures go to bench/results-<part>.json and .md")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run N times: each figure is the median, with min and max beside it")
    args = parser.parse_args()
    started = time.monotonic()
    server = database.base_url()
    speed = machine_speed(server)
    runs = []
    for number in range(args.repeat):
        if args.repeat > 1:
            print(f"run {number + 1} of {args.repeat}", flush=True)
        runs.append(measure(args, server, started))
    results = {**speed, **combine(runs), "repeat": args.repeat}
    write(results, args)


def measure(args, server: str, started: float) -> dict:
    """One run of the parts asked for."""
    results = {}
    written = []  # databases the parts wrote to, vacuumed before a latency run

    if args.only in (None, "core"):
        url = database.recreate(server, BENCH_DB)
        written.append(url)
        database.add_plain_table(url)
        results.update(core_figures(url, args.quick))
        print(f"core figures done after {time.monotonic() - started:.0f} s", flush=True)
    if args.only in (None, "wal"):
        # Both sources in the same rounds: the NOTIFY source's database beside the WAL source's.
        notify_url = database.recreate(server, BENCH_DB) if args.only else database.with_database(server, BENCH_DB)
        wal_url = database.recreate(server, WAL_DB, source="wal")
        written += [notify_url, wal_url]
        results.update(wal.wal_figures(wal_url, notify_url, args.quick))
        e2e_wal_url = database.recreate(server, E2E_WAL_DB, source="wal")
        database.settle(server, *written)
        stack.create_staff_user(stack.stack_env(e2e_wal_url, "redis", source="wal"))
        results.update(wal.wal_e2e_figures(e2e_wal_url, args.quick))
        print(f"WAL figures done after {time.monotonic() - started:.0f} s", flush=True)
    if args.only in (None, "forwarding"):
        forward_url = database.recreate(server, FORWARD_DB)
        written.append(forward_url)
        results.update(forwarding.forwarding_figures(forward_url, args.quick))
        print(f"forwarding figures done after {time.monotonic() - started:.0f} s", flush=True)
    if args.only in (None, "web"):
        e2e_url = database.recreate(server, E2E_DB)
        database.add_plain_table(e2e_url)
        database.settle(server, *written)
        stack.create_staff_user(stack.stack_env(e2e_url, "postgres"))
        results.update(web_figures(e2e_url, args.quick))
        print(f"web figures done after {time.monotonic() - started:.0f} s", flush=True)
        results.update(peer_figures(server, e2e_url, results, args.quick))
    for part, name, figures in (("live", LIVE_DB, live.live_figures), ("chat", CHAT_DB, chat.chat_figures)):
        if args.only in (None, part):
            results.update(redis_part(server, part, name, figures, written, args.quick, started))
    return results


def redis_part(server: str, part: str, name: str, figures, written: list[str], quick: bool, started: float) -> dict:
    """A part that needs the machine's Redis, on a database of its own dropped at the end."""
    if not stack.redis_reachable():
        return {f"skipped_{part}": "Redis is not reachable at 127.0.0.1:6379"}
    url = database.recreate(server, name)
    database.settle(server, *written)
    try:
        results = figures(url, quick)
    finally:
        database.drop(server, name)
    print(f"{part} figures done after {time.monotonic() - started:.0f} s", flush=True)
    return results


def write(results: dict, args) -> None:
    server = database.base_url()
    version = database.server_version(server)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, PostgreSQL {version // 10000}"
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    results["quick"] = args.quick
    results["seconds"] = round(time.monotonic() - STARTED)
    name = f"results-{args.only}" if args.only else "results"  # one part does not overwrite the whole run
    (ROOT / "bench" / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if "sweep" in results:
        from bench.plot import plot_sweep  # matplotlib (bench/requirements.txt): the web part only

        plot_sweep(results["sweep"], CLIENTS, f"{results['machine']}, {results['date']}",
                   ROOT / "docs" / "e2e-latency.png")
    table = markdown(results, measured_only=bool(args.only))
    (ROOT / "bench" / f"{name}.md").write_text(table)
    print(table)
    print(f"bench took {results['seconds']} s")


if __name__ == "__main__":
    main()
