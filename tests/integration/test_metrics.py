"""`listen_notify --metrics-port`: Prometheus metrics scraped from a real listener process."""

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from notifyproject.shop.models import Order
from pgnotify import notify
from tests.helpers.sources import source_env
from tests.helpers.support import ManagedProcess, free_port
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_events_by_channel_and_operation(event_source, listener):
    port = free_port()
    process = listener("--name", "metrics", "--metrics-port", str(port), env=source_env(event_source))
    order = Order.objects.create()
    order.status = "paid"
    order.save()
    notify("chat", {"room": "lobby", "message": "hi"})
    process.wait_for(lambda lines: sum('"channel":"chat"' in line for line in lines))
    process.wait_for(lambda lines: sum('"op":"UPDATE"' in line for line in lines))

    # The metrics handler runs in a lane of its own: the output may show an event before it counts it.
    wanted = [(("channel", "orders"), ("operation", op)) for op in ("INSERT", "UPDATE")]
    wanted.append((("channel", "chat"), ("operation", "")))

    def counted():
        metrics = scrape(port)
        events = {labels: value for (name, labels), value in metrics.items() if name == "pgnotify_events_total"}
        return all(key in events for key in wanted) and (metrics, events)

    metrics, events = eventually(counted, 10, "the metrics to count the three notifications")
    assert events[(("channel", "orders"), ("operation", "INSERT"))] == 1
    assert events[(("channel", "orders"), ("operation", "UPDATE"))] == 1
    assert events[(("channel", "chat"), ("operation", ""))] == 1
    assert metrics[("pgnotify_commit_to_listener_seconds_count", ())] == 2
    assert 0 < metrics[("pgnotify_commit_to_listener_seconds_sum", ())] < 5
    assert metrics[("pgnotify_handler_latency_seconds_count", ())] >= 3
    assert metrics[("pgnotify_reconnects_total", ())] == 0
    assert metrics[("pgnotify_replay_backlog", ())] == 0
    assert 0 <= metrics[("pgnotify_notification_queue_usage", ())] < 0.5
    assert metrics[("pgnotify_listener_live", ())] == 1
    if event_source == "wal":  # the replication slot's retained WAL (the writes above), from a checkpoint on
        def retaining():
            return {labels: value for (name, labels), value in scrape(port).items()
                    if name == "pgnotify_slot_retained_bytes" and value > 0}

        ((labels, retained),) = eventually(retaining, 5, "a slot gauge of the WAL the slot retains").items()
        assert labels[0][1].startswith("pgnotify_metrics_") and retained > 0
    assert process.stop() == 0


def test_metrics_port_in_use_is_one_line(listener):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = ManagedProcess("listen_notify", "--metrics-port", str(busy.getsockname()[1]))
        assert process.proc.wait(30) != 0
        process.stop()
    assert len(process.stderr_lines) == 1 and "cannot serve metrics" in process.stderr_lines[0]
