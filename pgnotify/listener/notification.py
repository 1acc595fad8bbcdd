"""What the listener hands on: one notification, raw or replayed from the event log."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import exactjson


def now() -> datetime:
    return datetime.now(UTC)


def _event_of(data) -> dict | None:
    if type(data) is dict and type(data.get("id")) is int and type(data.get("txid")) is int:
        return data
    return None


@dataclass(slots=True)
class Notification:
    channel: str
    payload: str
    pid: int | None = None
    replayed: bool = False
    received: datetime = field(default_factory=now)
    data: object = None
    is_json: bool = False
    # The change event (SPEC §4) this notification carries, if it carries one: set by parse().
    event: dict | None = None

    def __post_init__(self):
        self.parse()

    def parse(self) -> None:
        # The listener's hot path: numbers exact (integers of any size, decimals as Decimal), in C.
        try:
            data = exactjson.loads(self.payload)
        except ValueError:
            self.data, self.is_json, self.event = None, False, None
            return
        self.data, self.is_json, self.event = data, True, _event_of(data)

    @property
    def chunk(self) -> tuple[int, int, int] | None:
        """(first id, last id, txid) when this is a bulk statement's chunk notification: it stands
        for the events of that transaction in that id range, to be read from the event log."""
        data = self.data
        if self.event is None and type(data) is dict and "chunk" in data:
            ids, txid = data["chunk"], data.get("txid")
            if (type(ids) is list and len(ids) == 2 and all(type(i) is int for i in ids)
                    and type(txid) is int):
                return ids[0], ids[1], txid
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
        """The notification as `listen_notify --json` prints it (exactjson.dumps keeps every digit)."""
        out = {
            "channel": self.channel,
            "payload": self.data if self.is_json else self.payload,
            "pid": self.pid,
            "received": self.received.isoformat(),
        }
        if self.replayed:
            out["replayed"] = True
        return out
