"""The subscriptions of one client connection (a websocket, or an SSE response): subscribe
with a snapshot or a resume, unsubscribe, limits. Frames go out through `send(frame)`."""

import asyncio
import logging
import time

from channels.db import database_sync_to_async

from ... import conf
from ...exceptions import one_line
from ..frames import ERROR, RESYNC, SNAPSHOT, SUBSCRIBE, UNSUBSCRIBE
from .positions import BadPosition, Position, decode
from .router import Subscription, deliver, router
from .snapshot import TooFarBehind, missed, snapshot
from .streams import Refused, get

logger = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 50  # per connection
MAX_ID_LENGTH = 100
PAGE_ROWS = 500


class LiveSession:
    def __init__(self, user, layer, send):
        self.user = user
        self.layer = layer
        self.send = send
        self.subscriptions: dict[str, Subscription] = {}
        self._resyncs: set[asyncio.Task] = set()

    async def error(self, sub_id, message: str) -> None:
        await self.send({"type": ERROR, "id": sub_id, "message": message})

    async def receive(self, message) -> None:
        """One client frame: subscribe or unsubscribe; anything else gets an error frame."""
        sub_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(sub_id, str) or not 0 < len(sub_id) <= MAX_ID_LENGTH:
            await self.error(None, f"'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
            return
        kind = message.get("type")
        if kind == UNSUBSCRIBE:
            await self.unsubscribe(sub_id)
        elif kind == SUBSCRIBE:
            await self.subscribe(sub_id, message.get("stream"), message.get("filter"), message.get("after"))
        else:
            await self.error(sub_id, "'type' must be subscribe or unsubscribe")

    async def unsubscribe(self, sub_id: str) -> None:
        subscription = self.subscriptions.pop(sub_id, None)
        if subscription is not None:
            (await router(self.layer)).remove(subscription)

    async def close(self) -> None:
        for task in list(self._resyncs):
            task.cancel()
        if self.subscriptions:
            found = await router(self.layer)
            for subscription in self.subscriptions.values():
                found.remove(subscription)
            self.subscriptions.clear()

    async def subscribe(self, sub_id: str, name, filter, after) -> None:
        if sub_id in self.subscriptions:
            await self.error(sub_id, f"subscription {sub_id!r} exists: unsubscribe it first")
            return
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self.error(sub_id, f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
            return
        try:
            stream = get(name)
            if not (self.user.is_authenticated or stream.anonymous):
                raise Refused(f"stream {name} is for logged-in users")
            position = decode(after) if after is not None else None
            rights = await database_sync_to_async(stream.rights)(self.user)
            subscription = Subscription(sub_id, stream, rights, stream.filter(filter), self._sender(sub_id))
        except (Refused, BadPosition) as error:
            await self.error(sub_id, str(error))
            return
        subscription.restart = lambda: self._restart(subscription)
        self.subscriptions[sub_id] = subscription
        found = await router(self.layer)
        found.add(subscription)  # buffers from now on, before the view is read
        try:
            if position is not None and not await self._resume(subscription, position):
                await self.send({"type": RESYNC, "id": sub_id})
                position = None
            if position is None:
                await self._snapshot(subscription)
        except Exception as error:  # the database is away: the client may subscribe again
            logger.warning("live subscription %s failed: %s", sub_id, one_line(error))
            found.remove(subscription)
            self.subscriptions.pop(sub_id, None)
            await self.error(sub_id, "the subscription failed; subscribe again")
            return
        if self.subscriptions.get(sub_id) is subscription:
            await found.drain(subscription)

    def _restart(self, subscription: Subscription) -> None:
        task = asyncio.get_running_loop().create_task(self._resync(subscription))
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync(self, subscription: Subscription) -> None:
        """After lost group messages: `resync` and a fresh snapshot (docs/live.md: the client drops its rows)."""
        found = await router(self.layer)
        if self.subscriptions.get(subscription.id) is not subscription or subscription.buffer is not None:
            return  # gone, or being read: it restarts once live (Router.drain)
        found.hold(subscription)  # buffers from now on, before the view is read
        subscription.gap, subscription.settled = False, None
        await deliver(subscription, {"type": RESYNC, "id": subscription.id})
        try:
            await self._snapshot(subscription)
        except Exception as error:  # the database is away: the client may subscribe again
            logger.warning("live subscription %s not resynced: %s", subscription.id, one_line(error))
            await self.unsubscribe(subscription.id)
            await self.error(subscription.id, "the subscription failed; subscribe again")
            return
        if self.subscriptions.get(subscription.id) is subscription:
            await found.drain(subscription)

    def _sender(self, sub_id):
        async def send(frame):
            if sub_id in self.subscriptions:
                await self.send(frame)
        return send

    async def _snapshot(self, subscription: Subscription) -> None:
        current, rows = await database_sync_to_async(snapshot)(subscription.stream, subscription.q)
        subscription.position = Position(current, time.time())
        pk = subscription.stream.fields[0]
        subscription.pks = {row[pk] for row in rows}
        position = subscription.position.encode()
        pages = [rows[start:start + PAGE_ROWS] for start in range(0, len(rows), PAGE_ROWS)] or [[]]
        for number, page in enumerate(pages, 1):
            await deliver(subscription, {"type": SNAPSHOT, "id": subscription.id, "rows": page,
                                         "position": position, "done": number == len(pages)})

    async def _resume(self, subscription: Subscription, position: Position) -> bool:
        """Send what changed since `position`; False when it cannot be (older than RETENTION)."""
        if time.time() - position.taken > conf.retention().total_seconds():
            return False
        try:
            current, pks, events = await missed(subscription, position)
        except TooFarBehind:
            return False
        subscription.position = position
        subscription.pks = set(pks)  # (after the catch-up below: the view under `current`)
        replay = Subscription(subscription.id, subscription.stream, subscription.rights, subscription.filter,
                              subscription.send)
        replay.position = Position(position.snapshot, position.taken, dict(position.applied))
        replay.pks = _before(pks, events, subscription)
        if getattr(subscription.rights, "query", False):  # the rows' membership now decides, as live
            subscription.rights.verdicts.update({event.get("id"): event.get("row") if event.get("pk") in pks else None
                                                 for event in events})
        for event in events:
            frame = replay.change(event)
            if frame is not None:
                await deliver(subscription, frame)
        subscription.position = Position(current, time.time())
        return True


def _before(pks_now: set, events: list[dict], subscription: Subscription) -> set:
    """The view's keys at the resumed position, as far as the events tell: a key no event touches
    is in it as it is now; otherwise the first event on the key says. An UPDATE of a column the
    rights or the filter read does not tell (the event has no old values): the key is taken as in
    the view, so the client gets an UPDATE (an upsert) or a DELETE, never a stale row."""
    read = subscription.rights.columns | subscription.filter.columns
    before = set(pks_now)
    seen = set()
    for event in events:
        pk, op, row = event.get("pk"), event.get("op"), event.get("row") or {}
        if pk in seen:
            continue
        seen.add(pk)
        changed = event.get("changed")
        if op == "INSERT":
            was_in = False
        elif getattr(subscription.rights, "query", False):
            was_in = True  # rights that need a query cannot be evaluated on an old row
        elif op == "DELETE" or (op == "UPDATE" and isinstance(changed, list) and not read & set(changed)):
            was_in = subscription.rights.matches(row) and subscription.filter.matches(row)
        else:
            was_in = True
        (before.add if was_in else before.discard)(pk)
    return before
