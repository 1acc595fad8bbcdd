"""Positions: where a subscription's view stands, opaque to the client.

base64url of compact JSON {"s": snapshot, "x": [ids], "t": seconds}: every change of a
transaction `s` sees is in the view, and so are the events `x` (applied since, not seen by `s`);
`t` is when `s` was taken (Unix time), so that a position older than RETENTION is known to be."""

import base64
import json
import time
from dataclasses import dataclass, field

from ...listener.snapshots import Snapshot


@dataclass
class Position:
    snapshot: Snapshot
    taken: float = field(default_factory=time.time)
    applied: dict[int, int] = field(default_factory=dict)  # event id -> txid, events `snapshot` does not see

    def encode(self) -> str:
        data = {"s": self.snapshot.text, "x": list(self.applied), "t": round(self.taken, 3)}
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    def covers(self, event_id: int, txid: int) -> bool:
        """The view already holds this event's change."""
        return event_id in self.applied or self.snapshot.sees(txid)

    def apply(self, event_id: int, txid: int) -> None:
        self.applied[event_id] = txid

    def advance(self, newer: Snapshot, taken: float) -> bool:
        """Move to `newer`, a checkpoint the events before it in the stream led up to, when it sees
        everything the position does; returns whether it did."""
        if not includes(newer, self.snapshot):
            return False
        self.snapshot, self.taken = newer, taken
        self.applied = {i: t for i, t in self.applied.items() if not newer.sees(t)}
        return True


def includes(newer: Snapshot, older: Snapshot) -> bool:
    """Every transaction `older` sees, `newer` sees too."""
    return older.xmax <= newer.xmax and all(x in older.in_progress for x in newer.in_progress if x < older.xmax)


class BadPosition(ValueError):
    pass


def decode(token) -> Position:
    if not isinstance(token, str) or len(token) > 100_000:
        raise BadPosition("position must be the text a frame carried")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        applied = {int(i): 0 for i in data["x"]}
        return Position(Snapshot.parse(data["s"]), float(data["t"]), applied)
    except (ValueError, KeyError, TypeError) as error:
        raise BadPosition("position is not one this server gave") from error
