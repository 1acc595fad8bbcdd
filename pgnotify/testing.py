"""Helpers for a project's own tests: the change events a block of code makes, without a commit.

    from django.test import TestCase
    from pgnotify.testing import capture_events

    class ShippingTests(TestCase):
        def test_marking_an_order_shipped_sends_one_update(self):
            with capture_events() as events:
                Order.objects.filter(pk=self.order.pk).update(status="shipped")
            [event] = events
            self.assertEqual(event["changed"], ["status"])

The change trigger writes each event to the event log in the writer's own transaction, so the
events can be read back before anything commits: inside a `TestCase` (one transaction per test)
they are exactly the events of the block's writes on that connection, in order, as the listener
would hand them on (every field of docs/models.md; `row` never holds an excluded column). With
PGNOTIFY["SOURCE"] = "wal" there is no trigger on the tables: for the block, the triggers are
attached inside the test's transaction and dropped again at its end, so the events are the same
(their `id` is the event log's, not the WAL position the WAL source would give them).

`run_handlers(events, handlers)` hands captured events to handlers, each called as the listener
calls it (a callable, or an object with `handle`), sync or async. pytest-django users get the same
through the `pgnotify_capture` fixture (pgnotify.pytest_plugin, loaded by pytest on its own).
"""

import asyncio
import contextlib
import inspect
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import connections
from django.test import override_settings

from . import conf
from .listener import exactjson
from .listener.notification import Notification

__all__ = ["capture_events", "run_handlers"]

_START = "SELECT coalesce(max(id), 0) FROM pgnotify_event"
# In a transaction: this transaction's events only (another connection's writes are not the block's).
_OWN = "SELECT payload::text FROM pgnotify_event WHERE id > %s AND txid = pg_current_xact_id() ORDER BY id"
_ALL = "SELECT payload::text FROM pgnotify_event WHERE id > %s ORDER BY id"


@contextlib.contextmanager
def capture_events(using: str = "default") -> Iterator[list[dict]]:
    """Yield a list that holds, after the block, the change events the block's writes made on
    connection `using`, in order. Outside a transaction (autocommit), every event committed
    during the block is captured, whoever wrote it."""
    connection = connections[using]
    events: list[dict] = []
    with _triggers_attached(using), connection.cursor() as cursor:
        cursor.execute(_START)
        (start,) = cursor.fetchone()
        yield events
        cursor.execute(_OWN if connection.in_atomic_block else _ALL, [start])
        events.extend(exactjson.loads(payload) for (payload,) in cursor.fetchall())


@contextlib.contextmanager
def _triggers_attached(using: str) -> Iterator[None]:
    """With the WAL source, the change triggers for the block (inside the test's transaction)."""
    if conf.source() != "wal":
        yield
        return
    from .schema.triggers import sync_triggers

    with override_settings(PGNOTIFY={**settings.PGNOTIFY, "SOURCE": "notify"}):
        sync_triggers(using)
    try:
        yield
    finally:
        sync_triggers(using)  # the WAL source again: the triggers go


def run_handlers(events: Iterable[dict], handlers: Iterable) -> None:
    """Hand each event, as a Notification on its channel, to each handler in turn, as the
    listener would (sync or async handlers; from sync code)."""
    notifications = [Notification(event["channel"], exactjson.dumps(event)) for event in events]
    for handler in handlers:
        call = getattr(handler, "handle", handler)
        for notification in notifications:
            result = call(notification)
            if inspect.iscoroutine(result):
                asyncio.run(result)
