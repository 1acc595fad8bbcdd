"""What the listener hands on: one notification, raw or replayed from the event log."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson


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

    @classmethod
    def of_event(cls, channel: str, event: dict, received: datetime, replayed: bool = False) -> "Notification":
        """A change event a source made in Python (the WAL source): parsed already; its JSON text
        is made only if something reads `payload`."""
        notification = _MadeEvent.__new__(_MadeEvent)
        notification.channel, notification.pid, notification.replayed = channel, None, replayed
        notification.received, notification.data, notification.event, notification.is_json = (
            received, event, event, True)
        notification._text = None
        return notification

    def parse(self) -> None:
        # The listener's hot path: orjson (about 3.5 times faster on change events); the standard
        # library decides the rare payloads orjson refuses (NaN, integers beyond 64 bits).
        try:
            data = orjson.loads(self.payload)
        except orjson.JSONDecodeError:
            try:
                data = json.loads(self.payload)
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
        out = {
            "channel": self.channel,
            "payload": self.data if self.is_json else self.payload,
            "pid": self.pid,
            "received": self.received.isoformat(),
        }
        if self.replayed:
            out["replayed"] = True
        return out


class _MadeEvent(Notification):
    """A Notification whose payload text is written from its event when first asked for."""

    __slots__ = ("_text",)

    @property
    def payload(self) -> str:
        if self._text is None:
            try:
                self._text = orjson.dumps(self.event).decode()
            except TypeError:  # an integer past 64 bits
                self._text = json.dumps(self.event, ensure_ascii=False)
        return self._text

    @payload.setter
    def payload(self, text: str) -> None:
        self._text = text
