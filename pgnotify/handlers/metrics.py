"""Prometheus metrics of a listener (`listen_notify --metrics-port P`).

A handler like any other, registered last by the command only when the option is given, so a
listener without metrics pays nothing. Counters and histograms are updated as notifications
pass; the listener's own state (reconnects, queue usage) is read when Prometheus scrapes.
"""

import time
from datetime import datetime

from ..exceptions import MetricsPortError
from ..extras import require

require("prometheus_client", "metrics", "listen_notify --metrics-port")

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ListenerState:
    """Collector of the values the listener keeps itself, read at scrape time."""

    def __init__(self, metrics: "Metrics"):
        self.metrics = metrics

    def collect(self):
        stats = self.metrics.listener.stats if self.metrics.listener is not None else None
        reconnects = CounterMetricFamily("pgnotify_reconnects", "Reconnections of the listener to PostgreSQL.")
        reconnects.add_metric([], stats.reconnects if stats else 0)
        queue = GaugeMetricFamily("pgnotify_notification_queue_usage",
                                  "PostgreSQL's notification queue usage (0..1), at the last checkpoint.")
        queue.add_metric([], stats.queue_usage if stats else 0.0)
        live = GaugeMetricFamily("pgnotify_listener_live", "1 while the listener hands on live notifications.")
        live.add_metric([], 1.0 if stats and stats.state == "live" else 0.0)
        families = [reconnects, queue, live]
        wal = stats.wal if stats else None
        if wal:  # the WAL source: what its replication slot keeps on the server
            retained = GaugeMetricFamily("pgnotify_slot_retained_bytes",
                                         "WAL the listener's replication slot keeps on the server.", labels=["slot"])
            retained.add_metric([wal["slot"]], float(wal.get("retained_bytes") or 0))
            age = GaugeMetricFamily("pgnotify_slot_confirmed_age_seconds",
                                    "Seconds the slot's confirmed position has not covered everything received.",
                                    labels=["slot"])
            age.add_metric([wal["slot"]], float(wal.get("confirmed_age_s") or 0))
            families += [retained, age]
        return families


class Metrics:
    channels = None  # every channel

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.listener = None
        self._backlog = 0
        self.events = Counter("pgnotify_events", "Notifications handed on, by channel and operation "
                              "(operation is '' for notifications that are not change events).",
                              ["channel", "operation"], registry=self.registry)
        self.handler_latency = Histogram(
            "pgnotify_handler_latency_seconds",
            "Time from a notification's arrival until the handlers before the metrics took it.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.lag = Histogram("pgnotify_commit_to_listener_seconds",
                             "Time from the trigger's run to the listener's receipt, live change events.",
                             buckets=LATENCY_BUCKETS, registry=self.registry)
        self.replay_backlog = Gauge("pgnotify_replay_backlog",
                                    "Events still to replay from the event log in the current catch-up.",
                                    registry=self.registry)
        self.registry.register(_ListenerState(self))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve /metrics on host:port from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def attach(self, listener) -> None:
        self.listener = listener

    async def handle(self, notification) -> None:
        received = notification.received
        self.handler_latency.observe(time.time() - received.timestamp())
        event = notification.event
        operation = event.get("op", "") if event is not None else ""
        self.events.labels(notification.channel, operation if type(operation) is str else "").inc()
        if event is None:
            return
        if notification.replayed:
            if self._backlog > 0:
                self._backlog -= 1
                self.replay_backlog.set(self._backlog)
        elif type(ts := event.get("ts")) is str:
            try:
                self.lag.observe((received - datetime.fromisoformat(ts)).total_seconds())
            except ValueError:
                pass

    async def notice(self, notice: dict) -> None:
        state = notice.get("state")
        if state in {"replaying", "live"}:
            self._backlog = int(notice.get("events") or 0) if state == "replaying" else 0
            self.replay_backlog.set(self._backlog)


def serve_metrics(port: int, host: str = "127.0.0.1") -> Metrics:
    """A Metrics handler whose /metrics is served on host:port."""
    metrics = Metrics()
    try:
        metrics.serve(port, host)
    except OSError as error:
        raise MetricsPortError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from error
    return metrics
