"""Positions as snapshots (pgnotify.listener.snapshots) and the reconnect backoff, without a database
(against PostgreSQL: tests/integration/test_replay.py)."""

from pgnotify.listener.backoff import backoff_delay
from pgnotify.listener.snapshots import Snapshot


def test_snapshot_sees_committed_not_in_progress():
    snapshot = Snapshot.parse("100:105:100,103")
    assert snapshot.xmin == 100 and snapshot.xmax == 105 and snapshot.in_progress == {100, 103}
    assert snapshot.sees(99)  # ended before the oldest transaction still running
    assert not snapshot.sees(100) and not snapshot.sees(103)  # running when the snapshot was taken
    assert snapshot.sees(101) and snapshot.sees(104)  # ended between xmin and xmax
    assert not snapshot.sees(105) and not snapshot.sees(200)  # not started yet
    assert Snapshot.parse("7:7:").in_progress == frozenset()
    assert Snapshot.parse("7:7:").sees(6) and not Snapshot.parse("7:7:").sees(7)


def test_backoff_is_capped_exponential_with_jitter():
    delays = [backoff_delay(attempt, 0.25, 10.0) for attempt in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(10.0, 0.25 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(10_000, 0.25, 10.0) <= 10.0  # hours of failures do not overflow
    assert len({backoff_delay(3, 0.25, 10.0) for _ in range(20)}) > 1  # jitter
