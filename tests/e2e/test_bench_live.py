"""bench/live.py (the `make bench` live rows) does not rot: its smallest run ends by itself with
every figure, no row reaches another user, and it leaves no process behind."""

import uuid

import psutil
import pytest

from bench import database, live
from bench.stack import redis_reachable

pytestmark = [pytest.mark.once, pytest.mark.slow]

SMOKE = live.Sizes(users=10, small_users=2, rate=20, seconds=2, snapshot_rows=100)  # 20 subscriptions


def test_smallest_live_bench_measures_every_row_and_cleans_up():
    if not redis_reachable():
        pytest.skip("no Redis on 127.0.0.1:6379")
    server = database.with_database(database.base_url(), "postgres")
    name = f"pgnotify_bench_live_{uuid.uuid4().hex[:8]}"
    url = database.recreate(server, name)
    try:
        results = live.live_figures(url, quick=True, sizes=SMOKE)
    finally:
        database.drop(server, name)
    assert results["live_subscriptions"] == results["live_subscriptions_wanted"] == 20
    assert results["live_small_subscriptions"] == 4
    assert results["live_delivered_ratio"] == results["live_small_delivered_ratio"] == 1.0
    assert results["live_wrong_user_deliveries"] == 0
    assert results["live_phases"]["full"]["written"] > 0
    assert results["live_subscribers_p99_ms"] > 0 and results["live_cost_ratio"] > 0
    assert results["live_snapshot_rows"] == 100 and results["live_snapshot_rows_per_s"] > 0
    assert not psutil.Process().children(recursive=True)
