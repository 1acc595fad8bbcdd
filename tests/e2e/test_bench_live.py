"""bench/live.py (the `make bench` live rows) does not rot: its smallest run ends by itself with
every figure, no row reaches another user, and it leaves no process behind."""

import psutil
import pytest

from bench import live

pytestmark = [pytest.mark.once, pytest.mark.slow]

SMOKE = live.Sizes(users=10, small_users=2, rate=20, seconds=2, snapshot_rows=100)  # 20 subscriptions


def test_smallest_live_bench_measures_every_row_and_cleans_up(bench_database):
    results = live.live_figures(bench_database, quick=True, sizes=SMOKE)
    assert results["live_subscriptions"] == results["live_subscriptions_wanted"] == 20
    assert results["live_small_subscriptions"] == 4
    assert results["live_delivered_ratio"] == results["live_small_delivered_ratio"] == 1.0
    assert results["live_wrong_user_deliveries"] == 0
    assert results["live_phases"]["full"]["written"] > 0
    assert results["live_subscribers_p99_ms"] > 0 and results["live_cost_ratio"] > 0
    assert results["live_snapshot_rows"] == 100 and results["live_snapshot_rows_per_s"] > 0
    assert not psutil.Process().children(recursive=True)
