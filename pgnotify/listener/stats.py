"""Per-channel and listener statistics: counts, rates, commit-to-listener latency."""

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from .throttle import ThrottledLog

LATENCY_SAMPLES = 2000
logger = logging.getLogger(__name__)
# Events carrying a json value as its JSON text (docs/models.md): the first at once, then a count a minute.
_as_text_log = ThrottledLog(logger, "handed on %s events carrying a json value as its JSON text "
                            "(nested too deeply, or holding what jsonb refuses)", 60)


def percentile(values, fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class ChannelStats:
    count: int = 0
    replayed: int = 0
    non_json: int = 0
    as_text: int = 0  # events carrying a json value as its JSON text
    # (event ts as sent, time received) of the newest live events: parsed when a summary is made.
    samples: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    _window_start: float = field(default_factory=time.monotonic)
    _window_count: int = 0

    def latencies_ms(self) -> list[float]:
        latencies = []
        for ts, received in self.samples:
            try:
                latencies.append((received - datetime.fromisoformat(ts)).total_seconds() * 1000)
            except (TypeError, ValueError):
                pass  # not an ISO 8601 time with an offset: no latency to tell
        return latencies

    def rate(self) -> float:
        """Notifications per second since the last call."""
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-9)
        rate = (self.count - self._window_count) / elapsed
        self._window_start, self._window_count = now, self.count
        return rate


@dataclass
class ListenerStats:
    state: str = "starting"
    reconnects: int = 0
    last_event_id: int | None = None
    queue_usage: float = 0.0
    replayed: int = 0
    duplicates_dropped: int = 0
    started: float = field(default_factory=time.monotonic)
    # The WAL source's replication slot: its name, retained WAL and confirmed position.
    wal: dict | None = None
    channels: dict[str, ChannelStats] = field(default_factory=dict)

    def record(self, notification) -> None:
        # The listener's hot path: one dict lookup, a few counters, and the latency sample, kept
        # as it came (parsing the event's ts is left to the summary, which reads 2,000 at most).
        channel = notification.channel
        stats = self.channels.get(channel)
        if stats is None:
            stats = self.channels[channel] = ChannelStats()
        stats.count += 1
        if not notification.is_json:
            stats.non_json += 1
        replayed = notification.replayed
        if replayed:
            stats.replayed += 1
            self.replayed += 1
        event = notification.event
        if event is None:
            return
        self.last_event_id = event["id"]
        if "as_text" in event:
            stats.as_text += 1
            _as_text_log.add(detail=f"the last: event {event['id']} on {channel}, {', '.join(event['as_text'])}")
        if not replayed:
            stats.samples.append((event.get("ts"), notification.received))

    def snapshot(self, rates: bool = True) -> dict:
        """A JSON-ready summary; rates cover the time since the previous snapshot with rates (the
        dashboard's page computes its own from the counts, and asks for none)."""
        channels = {}
        for name, stats in sorted(self.channels.items()):
            latencies = stats.latencies_ms()
            channels[name] = {
                "count": stats.count,
                **({"rate": round(stats.rate(), 2)} if rates else {}),
                "replayed": stats.replayed,
                "non_json": stats.non_json,
                "as_text": stats.as_text,
                "latency_p50_ms": _round(percentile(latencies, 0.50)),
                "latency_p99_ms": _round(percentile(latencies, 0.99)),
            }
        return {
            "state": self.state,
            "reconnects": self.reconnects,
            "last_event_id": self.last_event_id,
            "queue_usage": self.queue_usage,
            "replayed": self.replayed,
            "duplicates_dropped": self.duplicates_dropped,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "channels": channels,
            **({"wal": dict(self.wal)} if self.wal is not None else {}),
        }


def _round(value):
    return None if value is None else round(value, 3)
