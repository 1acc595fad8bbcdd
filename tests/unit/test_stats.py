"""Listener statistics (pgnotify.stats): counts and commit-to-listener latency per channel."""

import json
from datetime import UTC, datetime, timedelta

from pgnotify.listener.notification import Notification
from pgnotify.listener.stats import LATENCY_SAMPLES, ListenerStats

RECEIVED = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def event(event_id: int, ts) -> str:
    return json.dumps({"id": event_id, "txid": 7, "ts": ts, "op": "INSERT"})


def test_latency_is_received_minus_the_event_ts_and_odd_times_are_left_out():
    stats = ListenerStats()
    sent = [(RECEIVED - timedelta(milliseconds=ms)).isoformat() for ms in (1, 2, 3, 4)]
    for number, ts in enumerate([*sent, "2026-11-27T09:59:59.999", "yesterday", 12345, None]):
        stats.record(Notification("orders", event(number, ts), 1, received=RECEIVED))
    stats.record(Notification("orders", event(99, sent[0]), None, replayed=True, received=RECEIVED))
    stats.record(Notification("orders", "plain text", 1, received=RECEIVED))

    orders = stats.snapshot()["channels"]["orders"]
    assert orders["count"] == 10 and orders["replayed"] == 1 and orders["non_json"] == 1
    # Four live events with an ISO 8601 ts and offset; the replayed one does not count.
    assert orders["latency_p50_ms"] == 3.0 and orders["latency_p99_ms"] == 4.0
    assert stats.last_event_id == 99


def test_latency_keeps_the_newest_samples_only():
    stats = ListenerStats()
    for number in range(LATENCY_SAMPLES + 500):
        late = 1000 if number < 500 else 1
        ts = (RECEIVED - timedelta(milliseconds=late)).isoformat()
        stats.record(Notification("orders", event(number, ts), 1, received=RECEIVED))
    orders = stats.snapshot()["channels"]["orders"]
    assert orders["latency_p99_ms"] == 1.0  # the 500 slow ones are older than the newest 2,000
