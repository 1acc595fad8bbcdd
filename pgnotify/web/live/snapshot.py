"""The database side of a subscription: its first snapshot, and the catch-up of a resume.

Both run in one REPEATABLE READ transaction that also reads pg_current_snapshot(): the rows
and the snapshot agree, so a live event is in the rows exactly when the snapshot sees its
transaction. Rows are rendered by PostgreSQL's to_jsonb, as change events are."""

from channels.db import database_sync_to_async
from django.db import connection, transaction

from ... import conf
from ...listener import exactjson
from ...listener.snapshots import Snapshot
from .positions import Position
from .router import await_checkpoint
from .streams import view_sql

CATCH_UP_LIMIT = 100_000  # events one resume may read; past it the client gets a resync instead
# Under the WAL source, how long a resume waits for the listener's checkpoint (about 2 s when it runs).
CHECKPOINT_WAIT = 10.0


class TooFarBehind(Exception):
    """The position cannot be resumed from: the client gets a resync and a fresh snapshot."""


def snapshot(stream, q) -> tuple[Snapshot, list[dict]]:
    """The current snapshot and the view's rows under it (declared fields, ordered by pk)."""
    sql, params = view_sql(stream, q, list(stream.fields))
    pk = connection.ops.quote_name(stream.fields[0])
    with transaction.atomic(), connection.cursor() as cursor:
        current = _current(cursor)
        cursor.execute(f"SELECT to_jsonb(v)::text FROM ({sql}) v ORDER BY v.{pk}", params)
        rows = [exactjson.loads(text) for (text,) in cursor.fetchall()]
    return current, rows


_CATCH_UP = """
    SELECT payload::text FROM pgnotify_event
     WHERE txid >= pg_snapshot_xmin(%(old)s::pg_snapshot)
       AND NOT pg_visible_in_snapshot(txid, %(old)s::pg_snapshot)
       AND pg_visible_in_snapshot(txid, %(new)s::pg_snapshot)
       AND payload->>'model' = %(model)s
       AND id NOT IN (SELECT unnest(%(skip)s::bigint[]))
     ORDER BY {order} LIMIT %(limit)s
"""


async def missed(subscription, position: Position) -> tuple[Snapshot, set, list[dict]]:
    """For a resume from `position`: a current snapshot, the primary keys of the view under it,
    and the stream model's events committed after `position` up to it, in order.

    Under the NOTIFY source the writers' own transactions log their events: one REPEATABLE READ
    transaction reads all three. Under the WAL source the listener logs them when it checkpoints,
    behind the server: the snapshot X and the keys are read first, then the resume waits until
    the listener's checkpoint C that sees everything X sees reached the subscription (the
    listener writes the log before it sends C, and C only once every transaction C sees was
    handed on), and only then reads the log up to X. Events arrive in WAL order (their ids): a
    row's changes in the order they were made."""
    stream, q = subscription.stream, subscription.q
    if conf.source() != "wal":
        return await database_sync_to_async(catch_up)(stream, q, position)
    current, pks = await database_sync_to_async(view_keys)(stream, q)
    if not await await_checkpoint(subscription, current, CHECKPOINT_WAIT):
        raise TooFarBehind("no checkpoint of the listener in time")
    events = await database_sync_to_async(logged_events)(stream, position, current, "id")
    return current, pks, events


def _current(cursor) -> Snapshot:
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cursor.execute("SELECT pg_current_snapshot()::text")
    return Snapshot.parse(cursor.fetchone()[0])


def _keys(cursor, stream, q) -> set:
    sql, params = view_sql(stream, q, [stream.fields[0]])
    cursor.execute(f"SELECT (to_jsonb(v)->%s)::text FROM ({sql}) v", [stream.fields[0], *params])
    return {exactjson.loads(text) for (text,) in cursor.fetchall()}


def _events(cursor, stream, position: Position, until: Snapshot, order: str) -> list[dict]:
    cursor.execute(_CATCH_UP.format(order=order),
                   {"old": position.snapshot.text, "new": until.text, "model": stream.label,
                    "skip": list(position.applied), "limit": CATCH_UP_LIMIT + 1})
    events = [exactjson.loads(text) for (text,) in cursor.fetchall()]
    if len(events) > CATCH_UP_LIMIT:
        raise TooFarBehind()
    return events


def view_keys(stream, q) -> tuple[Snapshot, set]:
    """The current snapshot and the primary keys of the view under it."""
    with transaction.atomic(), connection.cursor() as cursor:
        current = _current(cursor)
        return current, _keys(cursor, stream, q)


def logged_events(stream, position: Position, until: Snapshot, order: str) -> list[dict]:
    """The stream model's logged events committed after `position` and by `until`."""
    with connection.cursor() as cursor:
        return _events(cursor, stream, position, until, order)


def catch_up(stream, q, position: Position) -> tuple[Snapshot, set, list[dict]]:
    """The NOTIFY source's `missed`, in one transaction; events in (txid, id) order."""
    with transaction.atomic(), connection.cursor() as cursor:
        current = _current(cursor)
        return current, _keys(cursor, stream, q), _events(cursor, stream, position, current, "txid, id")
