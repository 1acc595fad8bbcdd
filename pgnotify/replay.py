"""The event log side of delivery: listener positions, catch-up and pruning.

A position is a transaction snapshot S: every event whose transaction is visible in S has
been handed on. Catching up from S to a newer snapshot N hands on the events visible in N
but not in S, which are exactly the transactions that committed in between, whatever
their ids (concurrent writers commit out of id order, so "id > last id" would lose some).
"""

from datetime import timedelta

import psycopg

from .snapshots import Snapshot

CATCH_UP_BATCH = 5000

_LOAD = "SELECT snapshot, now() - updated_at FROM pgnotify_listener WHERE name = %s"
_START = """
    INSERT INTO pgnotify_listener (name, snapshot, updated_at) VALUES (%s, %s, now())
    ON CONFLICT (name) DO NOTHING
"""
_SAVE = "UPDATE pgnotify_listener SET snapshot = %s, updated_at = now() WHERE name = %s"
_CURRENT = "SELECT pg_current_snapshot()::text, pg_notification_queue_usage()"
_PENDING = """
    SELECT id, txid::text::bigint FROM pgnotify_event
     WHERE txid >= pg_snapshot_xmin(%(old)s::pg_snapshot)
       AND NOT pg_visible_in_snapshot(txid, %(old)s::pg_snapshot)
       AND pg_visible_in_snapshot(txid, %(new)s::pg_snapshot)
     ORDER BY txid, id
"""
_PAYLOADS = "SELECT channel, payload::text FROM pgnotify_event WHERE id = ANY(%s) ORDER BY txid, id"
_PAYLOAD = "SELECT payload::text FROM pgnotify_event WHERE id = %s"
_PRUNE = """
    DELETE FROM pgnotify_event WHERE id IN (
        SELECT id FROM pgnotify_event WHERE created_at < now() - %s ORDER BY id LIMIT %s)
"""
_OLDEST = "SELECT min(created_at) FROM pgnotify_event"


class EventLog:
    """Queries on the event log and positions, on one autocommit connection."""

    def __init__(self, connection: psycopg.AsyncConnection):
        self.connection = connection

    async def current(self) -> tuple[Snapshot, float]:
        """The current snapshot and the notification queue usage (0..1)."""
        cursor = await self.connection.execute(_CURRENT)
        text, usage = await cursor.fetchone()
        return Snapshot.parse(text), usage

    async def load_position(self, name: str) -> tuple[Snapshot | None, timedelta | None]:
        cursor = await self.connection.execute(_LOAD, [name])
        row = await cursor.fetchone()
        return (Snapshot.parse(row[0]), row[1]) if row else (None, None)

    async def start_position(self, name: str, snapshot: Snapshot) -> Snapshot:
        """Record a new name's position (unless another process just did) and return it."""
        await self.connection.execute(_START, [name, snapshot.text])
        position, _ = await self.load_position(name)
        return position

    async def save_position(self, name: str, snapshot: Snapshot) -> None:
        await self.connection.execute(_SAVE, [snapshot.text, name])

    async def pending(self, old: Snapshot, new: Snapshot) -> list[tuple[int, int]]:
        """(id, txid) of the events committed after `old` and by `new`, in commit order."""
        cursor = await self.connection.execute(_PENDING, {"old": old.text, "new": new.text})
        return await cursor.fetchall()

    async def payloads(self, ids: list[int]):
        """Yield (channel, payload) of the stored events with these ids, in commit order, a batch at a time."""
        for start in range(0, len(ids), CATCH_UP_BATCH):
            cursor = await self.connection.execute(_PAYLOADS, [ids[start:start + CATCH_UP_BATCH]])
            for channel, payload in await cursor.fetchall():
                yield channel, payload

    async def payload(self, event_id: int) -> str | None:
        cursor = await self.connection.execute(_PAYLOAD, [event_id])
        row = await cursor.fetchone()
        return row[0] if row else None

    async def prune(self, retention: timedelta, batch: int = 1000, max_batches: int = 20) -> int:
        """Delete events older than `retention`, in small batches; returns how many."""
        deleted = 0
        for _ in range(max_batches):
            cursor = await self.connection.execute(_PRUNE, [retention, batch])
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                break
        return deleted
