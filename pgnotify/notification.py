"""What the listener hands on: one notification, raw or replayed from the event log."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Notification:
    channel: str
    payload: str
    pid: int | None = None
    replayed: bool = False
    received: datetime = field(default_factory=now)
    data: object = None
    is_json: bool = False

    def __post_init__(self):
        self.parse()

    def parse(self) -> None:
        try:
            self.data, self.is_json = json.loads(self.payload), True
        except ValueError:
            self.data, self.is_json = None, False

    @property
    def event(self) -> dict | None:
        """The change event (SPEC §4) this notification carries, if it carries one."""
        data = self.data
        if isinstance(data, dict) and isinstance(data.get("id"), int) and isinstance(data.get("txid"), int):
            return data
        return None

    @property
    def truncated(self) -> bool:
        event = self.event
        return event is not None and event.get("truncated") is True

    def restore(self, payload: str) -> None:
        """Replace a truncated event by the whole one from the event log."""
        self.payload = payload
        self.parse()

    def as_json(self) -> dict:
        out = {
            "channel": self.channel,
            "payload": self.data if self.is_json else self.payload,
            "pid": self.pid,
            "received": self.received.isoformat(),
        }
        if self.replayed:
            out["replayed"] = True
        return out
