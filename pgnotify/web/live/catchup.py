"""After group messages were lost (pgnotify.web.fanout found a gap in the listener's numbers):
every live view of the process catches up from the event log, with one query for all of them,
instead of a resync and a snapshot query each (thousands at once would stall the process and
lose more).

The views are held (their events buffered), the log is read up to a current snapshot X from the
oldest xmin of their positions, each view applies the events its position does not cover, in
order, moves to X, and applies its buffer as after a snapshot. Where the log cannot tell (the WAL
source, whose log lags; rights that need a query; too many events; the database away) the view
gets `resync` and a fresh snapshot instead (LiveSession._resync)."""

import logging
import time
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.db import connection, transaction

from ... import conf
from ...exceptions import one_line
from ...listener import exactjson
from ...listener.snapshots import Snapshot

if TYPE_CHECKING:
    from .router import Router, Subscription

logger = logging.getLogger(__name__)

LIMIT = 100_000  # events one catch-up may read (as a resume); past it: resync


def from_log(subscription: "Subscription") -> bool:
    """Whether the event log can catch this subscription up (else: resync)."""
    return conf.source() != "wal" and not getattr(subscription.rights, "query", False)


async def catch_up(found: "Router", held: list["Subscription"], deliver) -> None:
    """`held`: live subscriptions the router holds (their events buffered) since the loss."""
    try:
        since = min(subscription.live_position.snapshot.xmin for subscription in held)
        labels = sorted({subscription.stream.label for subscription in held})
        current, events = await database_sync_to_async(logged_since)(labels, since)
    except Exception as error:  # the database is away, or too much was missed (TooFarBehind)
        logger.warning("live views not caught up from the event log (%s): resync", one_line(error))
        current, events = None, []
    if current is not None:
        await _route(found, held, events, deliver)
    for subscription in held:
        subscription.catching_up = False
        if current is None:
            subscription.gap, subscription.lost_again = True, False  # restarted (resync) once live again
        else:
            subscription.live_position.advance(current, time.time())
            if subscription.lost_again:  # held for one more round, from its new position
                subscription.catching_up, subscription.lost_again = True, False
                found.held.append(subscription)
                continue
        if subscription in found.by_model.get(subscription.stream.label, ()):  # not unsubscribed meanwhile
            await found.drain(subscription)


async def _route(found: "Router", held: list["Subscription"], events: list[dict], deliver) -> None:
    """Each event to the held subscriptions it concerns (the router's index), in order."""
    waiting = set(held)
    for event in events:
        label = event.get("model", "")
        for subscription in found.candidates(label, event) & waiting:
            frame = subscription.change(event)
            found.note_membership(subscription, event.get("pk"))
            if frame is not None:
                await deliver(subscription, frame)


_SINCE = """
    SELECT payload::text FROM pgnotify_event
     WHERE txid >= pg_snapshot_xmin(%(since)s::pg_snapshot)
       AND pg_visible_in_snapshot(txid, %(new)s::pg_snapshot)
       AND payload->>'model' = ANY(%(models)s)
     ORDER BY txid, id LIMIT %(limit)s
"""


def logged_since(labels: list[str], xmin: int) -> tuple[Snapshot, list[dict]]:
    """A current snapshot and the logged events of these models whose transaction it sees, from
    transaction `xmin` on, in (txid, id) order (the NOTIFY source: writers log their own events)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT pg_current_snapshot()::text")
        current = Snapshot.parse(cursor.fetchone()[0])
        cursor.execute(_SINCE, {"since": f"{xmin}:{xmin}:", "new": current.text, "models": labels,
                                "limit": LIMIT + 1})
        events = [exactjson.loads(text) for (text,) in cursor.fetchall()]
    if len(events) > LIMIT:
        raise ValueError(f"more than {LIMIT:,} events to catch up")
    return current, events
