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

from channels.db import database_sync_to_async

from ... import conf
from ...exceptions import one_line
from .router import Router, Subscription, deliver
from .snapshot import TooFarBehind, logged_since

logger = logging.getLogger(__name__)


async def catch_up(found: Router) -> None:
    live = [subscription for subscriptions in found.by_model.values() for subscription in subscriptions
            if subscription.buffer is None and subscription.position is not None]
    if conf.source() == "wal":
        _resync(live)
        return
    logged = [subscription for subscription in live if not getattr(subscription.rights, "query", False)]
    _resync([subscription for subscription in live if getattr(subscription.rights, "query", False)])
    if not logged:
        return
    for subscription in logged:
        found.hold(subscription)
        subscription.catching_up, subscription.gap = True, False
    try:
        since = min(subscription.position.snapshot.xmin for subscription in logged)
        labels = sorted({subscription.stream.label for subscription in logged})
        current, events = await database_sync_to_async(logged_since)(labels, since)
    except (TooFarBehind, Exception) as error:  # the database is away, or too much was missed
        logger.warning("live views not caught up from the event log (%s): resync", one_line(error) or "too far")
        current, events = None, []
    by_model: dict[str, list[dict]] = {}
    for event in events:
        by_model.setdefault(event.get("model"), []).append(event)
    for subscription in logged:
        subscription.catching_up = False
        if current is None:
            subscription.gap = True  # restarted (resync) once live again
        else:
            await _apply(subscription, by_model.get(subscription.stream.label, ()), current)
        if subscription in found.by_model.get(subscription.stream.label, ()):  # not unsubscribed meanwhile
            await found.drain(subscription)


async def _apply(subscription: Subscription, events, current) -> None:
    for event in events:
        frame = subscription.change(event)
        if frame is not None:
            await deliver(subscription, frame)
    subscription.position.advance(current, time.time())


def _resync(subscriptions: list[Subscription]) -> None:
    for subscription in subscriptions:
        subscription.gap = True
        if subscription.restart is not None:
            subscription.restart()
