"""The database side of a subscription: its first snapshot, and the catch-up of a resume.

Both run in one REPEATABLE READ transaction that also reads pg_current_snapshot(): the rows
and the snapshot agree, so a live event is in the rows exactly when the snapshot sees its
transaction. Rows are rendered by PostgreSQL's to_jsonb, as change events are."""

from django.db import connection, transaction

from ...listener import exactjson
from ...listener.snapshots import Snapshot
from .positions import Position

CATCH_UP_LIMIT = 100_000  # events one resume may read; past it the client gets a resync instead


class TooFarBehind(Exception):
    pass


def _view_sql(stream, q, columns: list[str]) -> tuple[str, list]:
    queryset = stream.model._default_manager.filter(q).values(*columns).order_by()
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


def snapshot(stream, q) -> tuple[Snapshot, list[dict]]:
    """The current snapshot and the view's rows under it (declared fields, ordered by pk)."""
    sql, params = _view_sql(stream, q, list(stream.fields))
    pk = connection.ops.quote_name(stream.fields[0])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT pg_current_snapshot()::text")
        current = Snapshot.parse(cursor.fetchone()[0])
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
     ORDER BY txid, id LIMIT %(limit)s
"""


def catch_up(stream, q, position: Position) -> tuple[Snapshot, set, list[dict]]:
    """For a resume from `position`: the current snapshot, the primary keys of the view under it,
    and the stream model's events committed after `position` up to it, in (txid, id) order."""
    sql, params = _view_sql(stream, q, [stream.fields[0]])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT pg_current_snapshot()::text")
        current = Snapshot.parse(cursor.fetchone()[0])
        cursor.execute(f"SELECT (to_jsonb(v)->%s)::text FROM ({sql}) v", [stream.fields[0], *params])
        pks = {exactjson.loads(text) for (text,) in cursor.fetchall()}
        cursor.execute(_CATCH_UP, {"old": position.snapshot.text, "new": current.text, "model": stream.label,
                                   "skip": list(position.applied), "limit": CATCH_UP_LIMIT + 1})
        events = [exactjson.loads(text) for (text,) in cursor.fetchall()]
    if len(events) > CATCH_UP_LIMIT:
        raise TooFarBehind()
    return current, pks, events
