"""One router per process (per event loop): the stream events of the channel layer, routed once
per event to the subscriptions they concern.

The router is one member of the per-process fan-out (pgnotify.web.fanout) of the listener's
group: each `changes` frame reaches the process once. For an event of model M it looks up the
subscriptions of M by the equality terms of their rights (`customer_id = 7` -> the
subscriptions of user 7), plus those that hold the row's pk in their view (the row may leave
it), plus those whose rights have no equality term (scanned). A subscription whose snapshot is
being taken buffers every event of its model, then applies them once it has its rows.
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async

from ...exceptions import one_line
from ...listener import exactjson
from ...listener.snapshots import Snapshot
from .. import fanout
from ..frames import CHANGE, CHANGES, CHECKPOINT, DASHBOARD_GROUP
from . import catchup
from .membership import admitted
from .positions import Position, includes

logger = logging.getLogger(__name__)


class Subscription:
    """One client subscription: a stream, the user's rights and the client's filter, the primary
    keys of the rows in its view, and the position of the view."""

    def __init__(self, sub_id, stream, rights, filter, send):
        self.id = sub_id
        self.stream = stream
        self.rights = rights
        self.filter = filter
        self.send = send  # async callable(frame dict)
        self.pks: set = set()
        self.position: Position | None = None
        self.router: Router | None = None  # set when the router takes it
        self.buffer = []  # events (and checkpoints) held while the view is being read
        self.synced = 0  # the router's checkpoints this view has taken (pgnotify.web.live.router.Router.sync)
        self.keys: list[tuple] = []  # this subscription's entries in its router's index
        self.checkpointed: asyncio.Event | None = None  # set when a checkpoint is buffered
        # After its rights changed (pgnotify.web.live.recheck): the snapshot the new view was read
        # under, and the rows that entered it then; events that snapshot sees are already in.
        self.settled: tuple | None = None
        # Group messages were lost while this view was live or being read: it is read afresh
        # (`restart`, set by its session: a resync and a new snapshot) once it is live again.
        self.gap = False
        self.restart = None
        self.catching_up = False  # held by the process's catch-up (pgnotify.web.live.catchup)
        self.lost_again = False  # messages lost again during it

    @property
    def buffer(self) -> list | None:
        return self._buffer

    @buffer.setter
    def buffer(self, value: list | None) -> None:
        # The router hands each checkpoint to the buffering views at once, to the live ones lazily.
        self._buffer = value
        if self.router is not None:
            (self.router.buffering.discard if value is None else self.router.buffering.add)(self)

    @property
    def live_position(self) -> Position:
        """The position of a view that was read: every view that events or a catch-up reach."""
        assert self.position is not None, "a view not read yet"
        return self.position

    @property
    def q(self):
        return self.rights.q & self.filter.q

    def change(self, event: dict) -> dict | None:
        """The frame this event makes for the view (None when it does not touch it), the view and
        its position updated."""
        position = self.position
        assert position is not None  # a view is read, and so has its position, before events reach it
        event_id, txid = event.get("id"), event.get("txid")
        if not isinstance(event_id, int) or not isinstance(txid, int) or position.covers(event_id, txid):
            return None
        position.apply(event_id, txid)
        op, row, pk = event.get("op"), event.get("row") or {}, event.get("pk")
        was_in = pk in self.pks
        if self.settled is not None and self.settled[0].sees(txid):
            # the view was read after this event: only a row kept across the change is behind
            is_in = was_in and pk not in self.settled[1] and op != "DELETE"
            if not is_in:
                return None
        else:
            admitted = self.rights.admitted_row(event) if op != "DELETE" else None
            is_in = admitted is not None and self.filter.matches(admitted)
            row = admitted if is_in else row
        if is_in:
            self.pks.add(pk)
            kind = "UPDATE" if was_in else "INSERT"
        elif was_in:
            self.pks.discard(pk)
            kind = "DELETE"
        else:
            return None
        visible = self.stream.visible(row)
        if kind == "DELETE":
            visible[self.stream.fields[0]] = pk
        return {"type": CHANGE, "id": self.id, "op": kind, "row": visible, "position": position.encode()}

    def checkpoint(self, snapshot: Snapshot, taken: float) -> None:
        if self.position is not None:
            self.position.advance(snapshot, taken)
            if self.settled is not None and includes(self.position.snapshot, self.settled[0]):
                self.settled = None


class Router:
    def __init__(self, layer):
        self.layer = layer
        self.by_model: dict[str, set[Subscription]] = {}  # model label -> its subscriptions
        self.index: dict[tuple, set[Subscription]] = {}  # (label, column, value) -> subscriptions
        self.members: dict[tuple, set[Subscription]] = {}  # (label, pk) -> subscriptions whose view holds it
        self.scanned: dict[str, set[Subscription]] = {}  # label -> subscriptions without an equality term
        self.queried: dict[str, set[Subscription]] = {}  # label -> subscriptions whose rights need a query
        self.buffering: set[Subscription] = set()  # subscriptions whose view is being read (or held)
        # The listener's last checkpoint and how many came: a live view takes the last one when it
        # next needs its position (`sync`), not every view on every checkpoint.
        self.checkpoints = 0
        self.last_checkpoint: tuple[Snapshot, float] | None = None
        self.columns: dict[str, dict[str, object]] = {}  # label -> indexed column -> its field
        self.joined = False
        self.ready = asyncio.Event()  # set once the fan-out's subscription is in place
        self.events = 0
        self.queries = 0  # membership queries of "query" streams (tests, measurements)
        self.gaps = 0  # times group messages were lost (every view caught up)
        self._catching_up: asyncio.Task | None = None
        self.held: list[Subscription] = []  # held for the next catch-up

    # -- the fan-out's side (the router is one of its consumers)

    async def send(self, text_data: str) -> None:
        try:
            frame = exactjson.loads(text_data)
        except ValueError:
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == CHANGES:
            events = [event for event in frame.get("events") or () if isinstance(event, dict)]
            await self.decide(events)
            for event in events:
                await self.route(event)
            self.forget_verdicts()
        elif kind == CHECKPOINT:
            try:
                snapshot, taken = Snapshot.parse(frame["snapshot"]), float(frame["t"])
            except (KeyError, TypeError, ValueError):
                return
            self.checkpoints += 1
            self.last_checkpoint = (snapshot, taken)
            for subscription in self.buffering:
                buffer = subscription.buffer
                assert buffer is not None  # `buffering` holds the views whose buffer is set
                buffer.append((CHECKPOINT, snapshot, taken))
                if subscription.checkpointed is not None:
                    subscription.checkpointed.set()

    def sync(self, subscription: Subscription) -> None:
        """A live view takes the listener's last checkpoint, if it has not yet. Every event before
        that checkpoint in the stream was routed to the view (when it concerned it), and each event
        the view applies is preceded by a sync: the same as taking each checkpoint as it came."""
        if subscription.synced != self.checkpoints and subscription.buffer is None:
            subscription.synced = self.checkpoints
            if self.last_checkpoint is not None:
                subscription.checkpoint(*self.last_checkpoint)

    def missed_messages(self) -> None:
        """The fan-out found group messages lost (before the message it is about to hand on): no
        view may go on without them. The live views are held at once (a later change of a row
        must not reach a view before the lost one) and catch up from the event log together
        (pgnotify.web.live.catchup); a view being read by its session (snapshot, resume, new
        rights) is read again once it is live."""
        self.gaps += 1
        for subscriptions in self.by_model.values():
            for subscription in list(subscriptions):
                if subscription.catching_up:
                    subscription.lost_again = True  # caught up once more after this round
                elif subscription.buffer is not None:
                    subscription.gap = True
                elif subscription.position is not None and catchup.from_log(subscription):
                    self.sync(subscription)
                    subscription.buffer = []  # held, but left in the index: the catch-up routes through it
                    subscription.catching_up = True
                    self.held.append(subscription)
                else:
                    subscription.gap = True
                    if subscription.restart is not None:
                        subscription.restart()
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        while self.held:
            held, self.held = self.held, []
            await catchup.catch_up(self, held, deliver)

    async def dispatch(self, message) -> None:
        pass  # other group messages are not for streams

    async def close(self, code=None) -> None:
        pass

    # -- rights that need a query: one per batch

    def _query_subscriptions(self, label: str) -> set[Subscription]:
        return self.queried.get(label, set())

    async def decide(self, events: list[dict]) -> None:
        """For the subscriptions whose rights need a query: which events' rows each admits, with
        one query per model and batch (a UNION of one part per distinct rights Q)."""
        batches: dict[str, list[dict]] = {}
        for event in events:
            if event.get("op") != "DELETE" and self.by_model.get(event.get("model", "")):
                batches.setdefault(event["model"], []).append(event)
        for label, batch in batches.items():
            subscriptions = list(self._query_subscriptions(label))
            if not subscriptions:
                continue
            by_source: dict = {}
            for subscription in subscriptions:
                by_source.setdefault(subscription.rights.source, []).append(subscription)
            model, sources = subscriptions[0].stream.model, list(by_source)
            pk_field = model._meta.pk
            pks = {_normal(pk_field, event.get("pk")) for event in batch} - {None}
            try:
                found = await database_sync_to_async(admitted)(subscriptions[0].stream, list(pks), sources)
            except Exception as error:  # the database is away: no row enters a view it cannot check
                logger.warning("live rights not decided for %d events: %s", len(batch), one_line(error))
                found = [{} for _ in sources]
            for source, rows in zip(sources, found, strict=True):
                verdicts = {event.get("id"): rows.get(_normal(pk_field, event.get("pk"))) for event in batch}
                for subscription in by_source[source]:
                    subscription.rights.verdicts.update(verdicts)
            self.queries += 1

    def forget_verdicts(self) -> None:
        """Verdicts of events a live subscription did not apply (already covered): dropped.
        Buffered subscriptions keep theirs until they apply their buffer."""
        for subscriptions in self.queried.values():
            for subscription in subscriptions:
                if subscription.buffer is None:
                    subscription.rights.verdicts.clear()

    # -- routing

    async def route(self, event: dict) -> None:
        label = event.get("model", "")
        everyone = self.by_model.get(label)
        if not everyone:
            return
        self.events += 1
        for subscription in list(self.candidates(label, event)):
            if subscription.buffer is not None:
                subscription.buffer.append(event)
                continue
            self.sync(subscription)
            frame = subscription.change(event)
            self.note_membership(subscription, event.get("pk"))
            if frame is not None:
                await deliver(subscription, frame)

    def candidates(self, label: str, event: dict) -> set[Subscription]:
        found = set(self.scanned.get(label, ()))
        found |= self.members.get((label, event.get("pk")), set())
        row = event.get("row") or {}
        for column, field in self.columns.get(label, {}).items():
            value = _normal(field, row.get(column))
            if value is not None:
                found |= self.index.get((label, column, value), set())
        return found

    def note_membership(self, subscription: Subscription, pk) -> None:
        key = (subscription.stream.label, pk)
        if pk in subscription.pks:
            self.members.setdefault(key, set()).add(subscription)
        elif key in self.members:
            self.members[key].discard(subscription)
            if not self.members[key]:
                del self.members[key]

    # -- subscriptions

    def add(self, subscription: Subscription) -> None:
        """From now on the subscription buffers its model's events (until `live`)."""
        label = subscription.stream.label
        subscription.router = self
        subscription.buffer = subscription.buffer if subscription.buffer is not None else []
        self.by_model.setdefault(label, set()).add(subscription)
        self.scanned.setdefault(label, set()).add(subscription)
        if subscription.stream.query:
            self.queried.setdefault(label, set()).add(subscription)

    def live(self, subscription: Subscription) -> None:
        """The view is read and the buffer applied: from now on only the events that concern it."""
        label = subscription.stream.label
        subscription.buffer = None
        subscription.synced = self.checkpoints  # those before are in the buffer it applied
        equalities = subscription.rights.equalities()
        if equalities:
            self.scanned[label].discard(subscription)
            column, value = equalities[0]
            self.columns.setdefault(label, {})[column] = subscription.rights.field(column)
            key = (label, column, value)
            self.index.setdefault(key, set()).add(subscription)
            subscription.keys = [key]
        for pk in subscription.pks:
            self.members.setdefault((label, pk), set()).add(subscription)

    def hold(self, subscription: Subscription) -> None:
        """Out of the index, buffering every event of its model until `drain` (its rights change)."""
        self.sync(subscription)
        self._unindex(subscription)
        self.scanned.setdefault(subscription.stream.label, set()).add(subscription)
        subscription.buffer = []

    def remove(self, subscription: Subscription) -> None:
        label = subscription.stream.label
        for group in (self.by_model.get(label), self.scanned.get(label), self.queried.get(label)):
            if group is not None:
                group.discard(subscription)
        self._unindex(subscription)
        subscription.buffer = None

    def _unindex(self, subscription: Subscription) -> None:
        label = subscription.stream.label
        for key in subscription.keys:
            self.index.get(key, set()).discard(subscription)
            if not self.index.get(key):
                self.index.pop(key, None)
        for pk in subscription.pks:
            members = self.members.get((label, pk))
            if members is not None:
                members.discard(subscription)
                if not members:
                    del self.members[(label, pk)]
        subscription.keys = []

    async def drain(self, subscription: Subscription) -> None:
        """Apply what the subscription buffered while its view was read, then make it live."""
        while subscription.buffer:
            item = subscription.buffer.pop(0)
            if isinstance(item, tuple):
                subscription.checkpoint(item[1], item[2])
                continue
            frame = subscription.change(item)
            if frame is not None:
                await deliver(subscription, frame)
        self.live(subscription)
        if subscription.gap and subscription.restart is not None:
            subscription.restart()


async def await_checkpoint(subscription: Subscription, snapshot: Snapshot, seconds: float) -> bool:
    """Wait until the subscription (buffering) holds a listener checkpoint that sees everything
    `snapshot` sees; False when none came within `seconds`."""
    async def arrived():
        while True:
            buffer = subscription.buffer
            if buffer is None:
                return False
            if any(isinstance(item, tuple) and includes(item[1], snapshot) for item in buffer):
                return True
            subscription.checkpointed = asyncio.Event()
            await subscription.checkpointed.wait()

    try:
        async with asyncio.timeout(seconds):
            return await arrived()
    except TimeoutError:
        return False
    finally:
        subscription.checkpointed = None


async def deliver(subscription: Subscription, frame: dict) -> None:
    try:
        await subscription.send(frame)
    except Exception as error:  # a socket that went away without saying so: its consumer removes it
        logger.debug("live frame not delivered: %s", one_line(error))


def _normal(field, value):
    if value is None or field is None:
        return None
    target = field.target_field if field.is_relation else field
    try:
        return target.to_python(value)
    except Exception:  # a value the column cannot hold matches no subscription
        return None


# event loop -> its router
_routers: dict[asyncio.AbstractEventLoop, Router] = {}


async def router(layer) -> Router:
    """This process's router, subscribed to the listener's group through the fan-out."""
    loop = asyncio.get_running_loop()
    for closed in [other for other in _routers if other.is_closed()]:
        del _routers[closed]
    found = _routers.get(loop)
    if found is None or found.layer is not layer:
        found = _routers[loop] = Router(layer)
    if not found.joined:
        found.joined = True
        try:
            await fanout.join(found, layer, DASHBOARD_GROUP, accept=_accepted)
        finally:
            found.ready.set()
    await found.ready.wait()
    return found


async def _accepted() -> None:
    pass


def now() -> float:
    return time.time()
