"""Rights re-evaluated while a subscription stays open: a change of what `rows(user)` returns
(the user joined a team, became staff...) takes effect on the next rights tick
(pgnotify.web.rights, every 2 s), not on the next subscribe.

On each tick the users of all open sockets are read again in one query; `rows(user)` is called
once per stream and user; each subscription whose rights Q changed is reconciled: its view's
keys under the new rights are read (with the rows that enter) in one REPEATABLE READ
transaction, rows that leave go out as DELETE and rows that enter as INSERT. Meanwhile its
model's events are held, and applied after, as after a snapshot."""

import logging

from channels.db import database_sync_to_async
from django.db import connection, transaction
from django.db.models import Q

from ...exceptions import one_line
from ...listener import exactjson
from ...listener.snapshots import Snapshot
from ..frames import CHANGE
from ..rights import CHUNK
from .router import Subscription, deliver, router
from .streams import Refused, view_sql

logger = logging.getLogger(__name__)


async def refresh(users: dict) -> None:
    """`users`: {LiveSession: its user as the database has it now}. In chunks of CHUNK sessions:
    the event loop runs between them, and each chunk's rights are garbage before the next."""
    changed = []
    sessions = list(users)
    for start in range(0, len(sessions), CHUNK):
        chunk = {session: users[session] for session in sessions[start:start + CHUNK]}
        changed += await database_sync_to_async(_changed_rights)(chunk)
    for session, subscription, rights in changed:
        if isinstance(rights, Refused):
            await session.unsubscribe(subscription.id)
            await session.error(subscription.id, str(rights))
        else:
            await reconcile(session, subscription, rights)


def _changed_rights(users: dict) -> list[tuple]:
    """(session, subscription, new rights or Refused) for each live subscription whose rights changed."""
    changed = []
    for session, user in users.items():
        session.user = user
        # Per socket, not per round: a round's Q objects held to its end would outlive the young
        # generations and, thousands a round, bring on full collections (stalls) sooner.
        computed: dict[str, Q | None] = {}
        for subscription in list(session.subscriptions.values()):
            if subscription.buffer is not None:  # its view is being read: the next tick looks again
                continue
            name = subscription.stream.name
            if name not in computed:
                try:
                    computed[name] = subscription.stream.rows_q(user)
                except Exception as error:  # the rights callable failed: the view stays as it is
                    logger.warning("rights of stream %s not re-evaluated: %s", name, one_line(error))
                    computed[name] = None
            q = computed[name]
            if q is None or _same(q, subscription.rights.source):
                continue  # the usual case: compared, not compiled again
            try:
                rights = subscription.stream.compile(q)
            except Refused as error:
                rights = error
            changed.append((session, subscription, rights))
    return changed


def _same(new: Q, old: Q) -> bool:
    try:
        return new == old
    except Exception:  # a value that cannot be compared: taken as changed
        return False


async def reconcile(session, subscription: Subscription, rights) -> None:
    """The view under the new rights: DELETE for the rows that leave, INSERT for those that enter."""
    found = await router(session.layer)
    if session.subscriptions.get(subscription.id) is not subscription or subscription.buffer is not None:
        return
    found.hold(subscription)
    try:
        current, pks, rows = await database_sync_to_async(read_change)(
            subscription.stream, rights.q & subscription.filter.q, set(subscription.pks))
    except Exception as error:  # the database is away: the old rights stay until the next tick
        logger.warning("live subscription %s not reconciled: %s", subscription.id, one_line(error))
        pks = None
    if session.subscriptions.get(subscription.id) is not subscription:
        return  # unsubscribed meanwhile
    if pks is not None:
        await _apply(subscription, rights, current, pks, rows)
    await found.drain(subscription)


async def _apply(subscription: Subscription, rights, current: Snapshot, pks: set, rows: list[dict]) -> None:
    pk = subscription.stream.fields[0]
    entering = {row[pk] for row in rows}
    leaving = subscription.pks - pks
    subscription.rights = rights
    subscription.pks = (subscription.pks & pks) | entering
    subscription.settled = (current, entering)
    position = subscription.live_position.encode()
    for key in sorted(leaving, key=str):
        await deliver(subscription, {"type": CHANGE, "id": subscription.id, "op": "DELETE", "row": {pk: key},
                                     "position": position})
    for row in rows:
        await deliver(subscription, {"type": CHANGE, "id": subscription.id, "op": "INSERT", "row": row,
                                     "position": position})


def read_change(stream, q: Q, held: set) -> tuple[Snapshot, set, list[dict]]:
    """Under one snapshot: the view's keys, and the rows of those not in `held` (ordered by pk)."""
    pk = stream.fields[0]
    keys_sql, keys_params = view_sql(stream, q, [pk])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT pg_current_snapshot()::text")
        current = Snapshot.parse(cursor.fetchone()[0])
        cursor.execute(f"SELECT (to_jsonb(v)->%s)::text FROM ({keys_sql}) v", [pk, *keys_params])
        pks = {exactjson.loads(text) for (text,) in cursor.fetchall()}
        entering = pks - held
        rows = []
        if entering:
            sql, params = view_sql(stream, q & Q(pk__in=entering), list(stream.fields))
            cursor.execute(f"SELECT to_jsonb(v)::text FROM ({sql}) v ORDER BY v.{connection.ops.quote_name(pk)}",
                           params)
            rows = [exactjson.loads(text) for (text,) in cursor.fetchall()]
    return current, pks, rows
