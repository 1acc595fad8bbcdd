"""The event log side of delivery: listener positions, catch-up and pruning.

A position is a transaction snapshot S: every event whose transaction is visible in S has
been handed on. Catching up from S to a newer snapshot N hands on the events visible in N
but not in S, which are exactly the transactions that committed in between, whatever
their ids (concurrent writers commit out of id order, so "id > last id" would lose some).

Order: a catch-up hands events on by (txid, id). Within a transaction, id follows the order
of its statements. Across transactions, PostgreSQL hands out txids in the order transactions
make their first write, and a transaction gets its txid before it commits. So when B made
its first write after A committed (B read A's change, or simply started after it), txid(A) <
txid(B) and A replays first: causally related transactions replay in commit order. Only
transactions that overlapped, the later-committing one having written first, can replay
in the opposite order of their commits; the live stream is always in commit order.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
# Committed after `old` and by `new`: the transactions `old` does not see and `new` does.
_BETWEEN = """
       txid >= pg_snapshot_xmin(%(old)s::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, %(old)s::pg_snapshot)
   AND pg_visible_in_snapshot(txid, %(new)s::pg_snapshot)
"""
_COUNT = "SELECT count(*) FROM pgnotify_event WHERE" + _BETWEEN
# Keyset pages in (txid, id) order, leaving out events already handed on (`skip`).
_PENDING = "SELECT txid::text::bigint, id, channel, payload::text FROM pgnotify_event WHERE" + _BETWEEN + """
   AND (txid, id) > (%(txid)s::text::xid8, %(id)s)
   AND id NOT IN (SELECT unnest(%(skip)s::bigint[]))  -- a hashed subplan; "<> ALL" is O(rows x skip)
 ORDER BY txid, id LIMIT %(limit)s
"""
_PAYLOAD = "SELECT payload::text FROM pgnotify_event WHERE id = %s"
# The events a chunk notification stands for: one statement's, so one transaction's, by id range.
_CHUNK = "SELECT payload::text FROM pgnotify_event WHERE id BETWEEN %s AND %s AND txid = %s::text::xid8 ORDER BY id"
_PRUNE = """
    DELETE FROM pgnotify_event WHERE id IN (
        SELECT id FROM pgnotify_event WHERE created_at < now() - %s ORDER BY id LIMIT %s)
"""


async def _unguarded(query: Awaitable, slow: bool = False):
    return await query


class EventLog:
    """Queries on the event log and positions, on one autocommit connection.

    `guard(query, slow)` awaits each query: the listener's bounds it in time (a connection whose
    server stops answering is taken for dead); `slow` marks the queries that may read many rows."""

    def __init__(self, connection: psycopg.AsyncConnection, guard: Callable[..., Awaitable] = _unguarded):
        self.connection = connection
        self._guard = guard

    async def _execute(self, query: str, params=None, slow: bool = False) -> psycopg.AsyncCursor:
        return await self._guard(self.connection.execute(query, params), slow)

    async def _one(self, query: str, params=None, slow: bool = False) -> tuple:
        """The row of a query that always returns exactly one (an aggregate, a function call)."""
        row = await (await self._execute(query, params, slow)).fetchone()
        assert row is not None, query
        return row

    async def current(self) -> tuple[Snapshot, float]:
        """The current snapshot and the notification queue usage (0..1)."""
        text, usage = await self._one(_CURRENT)
        return Snapshot.parse(text), usage

    async def load_position(self, name: str) -> tuple[Snapshot | None, timedelta | None]:
        cursor = await self._execute(_LOAD, [name])
        row = await cursor.fetchone()
        return (Snapshot.parse(row[0]), row[1]) if row else (None, None)

    async def start_position(self, name: str, snapshot: Snapshot) -> Snapshot:
        """Record a new name's position (unless another process just did) and return it."""
        await self._execute(_START, [name, snapshot.text])
        position, _ = await self.load_position(name)
        assert position is not None, name  # the row this inserted, or the other process's
        return position

    async def save_position(self, name: str, snapshot: Snapshot) -> None:
        await self._execute(_SAVE, [snapshot.text, name])

    async def count_pending(self, old: Snapshot, new: Snapshot) -> int:
        (count,) = await self._one(_COUNT, {"old": old.text, "new": new.text}, slow=True)
        return count

    async def pending(self, old: Snapshot, new: Snapshot, skip: Sequence[int] = ()) -> AsyncIterator[tuple[str, str]]:
        """Yield (channel, payload) of the events committed after `old` and by `new`, in (txid, id)
        order, a page at a time, leaving out the ids in `skip`."""
        params = {"old": old.text, "new": new.text, "skip": list(skip), "limit": CATCH_UP_BATCH, "txid": 0, "id": 0}
        while True:
            cursor = await self._execute(_PENDING, params, slow=True)
            rows = await cursor.fetchall()
            for _, _, channel, payload in rows:
                yield channel, payload
            if len(rows) < CATCH_UP_BATCH:
                return
            params["txid"], params["id"] = rows[-1][0], rows[-1][1]

    async def oldest(self) -> int | None:
        """The id of the oldest event kept (pruning deletes the oldest first)."""
        (oldest,) = await self._one("SELECT min(id) FROM pgnotify_event", slow=True)
        return oldest

    async def payload(self, event_id: int) -> str | None:
        cursor = await self._execute(_PAYLOAD, [event_id], slow=True)
        row = await cursor.fetchone()
        return row[0] if row else None

    async def chunk(self, first_id: int, last_id: int, txid: int) -> list[str]:
        """Payloads of the events of transaction `txid` with ids from `first_id` to `last_id`."""
        cursor = await self._execute(_CHUNK, [first_id, last_id, txid], slow=True)
        return [payload for (payload,) in await cursor.fetchall()]

    async def prune(self, retention: timedelta, batch: int = 1000, max_batches: int = 20) -> tuple[int, bool]:
        """Delete events older than `retention`, one small transaction per batch.

        Returns how many were deleted and whether none older is left."""
        deleted = 0
        for _ in range(max_batches):
            cursor = await self._execute(_PRUNE, [retention, batch], slow=True)
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted, True
        return deleted, False
