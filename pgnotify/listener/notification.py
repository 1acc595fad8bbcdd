"""What the listener hands on: one notification, raw or replayed from the event log."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import exactjson


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, init=False)
class Notification:
    channel: str
    payload: str
    pid: int | None = None
    replayed: bool = False
    received: datetime = field(default_factory=now)
    # Set by parse(): the parsed JSON, whether the payload is JSON, and the change event (docs/wire-format.md)
    # this notification carries, if it carries one.
    data: object = field(init=False)
    is_json: bool = field(init=False)
    event: dict | None = field(init=False)

    def __init__(self, channel: str, payload: str, pid: int | None = None, replayed: bool = False,
                 received: datetime | None = None):
        self.channel, self.payload, self.pid, self.replayed = channel, payload, pid, replayed
        self.received = now() if received is None else received
        # parse()'s strict JSON path, inline: the listener's hot path, once per notification (a
        # call costs as much as the event test); parse() takes whatever the strict decoder refuses.
        try:
            data = exactjson.decode(payload)
        except (ValueError, RecursionError):
            self.parse()
            return
        self.data, self.is_json = data, True
        self.event = (data if type(data) is dict and type(data.get("id")) is int and type(data.get("txid")) is int
                      else None)

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
        # Numbers exact (integers of any size, decimals as Decimal), in C; __init__ has the same
        # strict path inline.
        try:
            data = exactjson.decode(self.payload)
        except (ValueError, RecursionError):
            try:
                data = self._decode_odd()
            except ValueError:
                self.data, self.is_json, self.event = None, False, None
                return
        self.data, self.is_json = data, True
        self.event = (data if type(data) is dict and type(data.get("id")) is int and type(data.get("txid")) is int
                      else None)

    def _decode_odd(self) -> object:
        """What the strict decoder refused: non-strict JSON (NaN, Infinity), or a change event whose
        row holds a value too deeply nested to read, with that value as its JSON text
        (exactjson.loads_event). ValueError when it is neither."""
        try:
            return exactjson.loads(self.payload)
        except exactjson.NestedTooDeeply:
            return exactjson.loads_event(self.payload)

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

    def add_database(self, alias: str) -> None:
        """Say which database the event was read from (`database`, docs/wire-format.md): the key goes last, as
        jsonb orders it, and the payload text gets it without being written anew."""
        event = self.event
        assert event is not None, "only a change event names its database"
        if "database" not in event:
            event["database"] = alias
            text = self.payload.rstrip()
            self.payload = f"{text[:-1]}, \"database\": {json.dumps(alias)}}}"

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


class _MadeEvent(Notification):
    """A Notification whose payload text is written from its event when first asked for."""

    __slots__ = ("_text",)
    _text: str | None

    @property
    def payload(self) -> str:
        if self._text is None:
            self._text = exactjson.dumps(self.event)
        return self._text

    @payload.setter
    def payload(self, text: str) -> None:
        self._text = text
