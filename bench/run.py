"""pgnotify benchmarks: every figure is measured in the same run as its baseline.

    make bench            # or: .venv/bin/python -m bench.run [--quick]

Writes bench/results.json, bench/results.md and docs/e2e-latency.png. Uses DATABASE_URL, else the
embedded server, in databases of its own (pgnotify_bench, pgnotify_bench_e2e), created afresh.
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import database, stack, throughput, writes  # noqa: E402
from bench.peers import peer_figures  # noqa: E402
from bench.plot import plot_sweep  # noqa: E402
from bench.report import markdown  # noqa: E402
from bench.web import CLIENTS, web_figures  # noqa: E402

BENCH_DB = "pgnotify_bench"
E2E_DB = "pgnotify_bench_e2e"


def core_figures(url: str, quick: bool) -> dict:
    """Listener and replay rates, and what the triggers cost writers."""
    scale = 0.1 if quick else 1.0
    drain_n, replay_n, bulk_n = int(50_000 * scale), int(100_000 * scale), int(100_000 * scale)
    seconds = 2.0 if quick else 5.0
    results = {}
    raw = asyncio.run(throughput.raw_drain(url, drain_n))
    through_listener = asyncio.run(throughput.listener_drain(url, drain_n, "bench-drain"))
    results["raw_loop_events_per_s"] = round(raw)
    results["listener_events_per_s"] = round(through_listener)
    results["listener_vs_raw_ratio"] = round(through_listener / raw, 3)
    results["replay_events_per_s"] = round(asyncio.run(throughput.replay_rate(url, replay_n, "bench-replay")))
    for writers in (1, 8):
        plain = writes.insert_tps(url, "bench_plain", writers, seconds)
        watched = writes.insert_tps(url, "shop_order", writers, seconds)
        results[f"plain_insert_tps_{writers}_writers"] = round(plain)
        results[f"watched_insert_tps_{writers}_writers"] = round(watched)
        key = "write_overhead_1_writer" if writers == 1 else "write_overhead_8_writers"
        results[key] = round(1 - watched / plain, 3)
    plain_s = writes.bulk_update_seconds(url, "bench_plain", bulk_n)
    watched_s = writes.bulk_update_seconds(url, "shop_order", bulk_n)
    results["bulk_update_rows"] = bulk_n
    results["bulk_update_ratio"] = round(watched_s / plain_s, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs, for a smoke run")
    parser.add_argument("--only", choices=["core", "web"], help="run one part (development)")
    args = parser.parse_args()
    started = time.monotonic()
    server = database.base_url()
    results = {}

    if args.only != "web":
        url = database.recreate(server, BENCH_DB)
        database.add_plain_table(url)
        results.update(core_figures(url, args.quick))
        print(f"core figures done after {time.monotonic() - started:.0f} s", flush=True)
    if args.only != "core":
        e2e_url = database.recreate(server, E2E_DB)
        database.add_plain_table(e2e_url)
        stack.create_staff_user(stack.stack_env(e2e_url, "postgres"))
        results.update(web_figures(e2e_url, args.quick))
        print(f"web figures done after {time.monotonic() - started:.0f} s", flush=True)
        results.update(peer_figures(server, e2e_url, results, args.quick))

    version = database.server_version(server)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, PostgreSQL {version // 10000}"
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    results["quick"] = args.quick
    results["seconds"] = round(time.monotonic() - started)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if "sweep" in results:
        plot_sweep(results["sweep"], CLIENTS, f"{results['machine']}, {results['date']}",
                   ROOT / "docs" / "e2e-latency.png")
    table = markdown(results)
    (ROOT / "bench" / "results.md").write_text(table)
    print(table)
    print(f"bench took {results['seconds']} s")


if __name__ == "__main__":
    main()
