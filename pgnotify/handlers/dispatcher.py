"""What happens to a notification after the listener: the dispatcher hands it to each handler
(output, websocket groups, cache invalidation, the ones in PGNOTIFY["HANDLERS"]).

A handler is a callable taking the Notification (sync or async) or an object with any of
`handle(notification)`, `notice(dict)` and `flush()`. Each handler has a lane of its own
(pgnotify.handlers.lanes): its own queue, its own task, its own thread for sync code. Handing a
notification on only queues it, so a handler that is slow, fails or hangs holds up nobody else:
the output and the other handlers go on. A call that raises, or overruns the handler's
`timeout`, is logged (at most one line per handler every 10 s, with a count) and retried with
capped exponential backoff; the events after it wait behind it, in its lane, in order.

The listener calls `flush()` before it records its position, so the position only advances
over events that every handler has taken. `flush()` puts a barrier in every lane and waits up to
`patience` seconds for the lanes that kept up to pass it (a lane passes once it has taken
everything before the barrier and its handler's own `flush()` succeeded); when a lane has not,
it raises HandlersBehindError and the listener keeps its previous position, at every checkpoint,
until the slowest handler catches up. A lane that was already behind and has taken nothing since
is not waited for, so a hung handler costs the listener nothing. Waiting events are kept in memory (nothing is dropped);
past `max_backlog` of them in one lane, the dispatcher waits for that handler before it takes the
next event, holding the listener back rather than losing anything, until the listener stops.
"""

import asyncio
import contextlib
import inspect
import logging
import time

from ..exceptions import HandlersBehindError
from ..listener.throttle import ThrottledLog
from .entries import Filtered, handler_name, valid_timeout
from .lanes import Lane

logger = logging.getLogger(__name__)

FLUSH_PATIENCE = 1.0  # seconds a flush waits for the handlers that kept up before holding the position back
MAX_BACKLOG = 100_000  # events waiting in one lane before the listener is held back


def _lane(handler, on_pass) -> Lane:
    channels = timeout = None
    if isinstance(handler, Filtered):
        channels, timeout, handler = handler.channels, handler.timeout, handler.handler
    if channels is None and isinstance(getattr(handler, "channels", None), frozenset | set):
        channels = frozenset(handler.channels)  # a handler class may declare the channels it wants
    if timeout is None and valid_timeout(getattr(handler, "timeout", None)) and not inspect.isfunction(handler):
        timeout = handler.timeout  # ... and its own timeout
    return Lane(handler, handler_name(handler), channels, timeout, on_pass)


class Dispatcher:
    """The listener's sink: fans each notification out to the lanes of the handlers that want its channel."""

    def __init__(self, handlers, patience: float = FLUSH_PATIENCE, max_backlog: int = MAX_BACKLOG):
        self.lanes = [_lane(handler, self._passed) for handler in handlers]
        self.patience = patience
        self.max_backlog = max_backlog
        self._handling = [lane for lane in self.lanes if lane.handle is not None]
        self._noticing = [lane for lane in self.lanes if lane.notice is not None]
        self._barrier = 0
        self._progress = asyncio.Event()
        self._stopping = False
        self._held = ThrottledLog(logger, "holding the listener back %d times: a handler has too many events "
                                          "waiting", 10.0)

    @property
    def handlers(self) -> list:
        return [lane.handler for lane in self.lanes]

    async def handle(self, notification) -> None:
        channel = notification.channel
        for lane in self._handling:
            if lane.channels is None or channel in lane.channels:
                lane.put(notification)
                if len(lane.queue) > self.max_backlog and not self._stopping:
                    await self._wait_for_room(lane)

    async def notice(self, notice: dict) -> None:
        """Queue the notice behind what each handler has to take: never waits (the listener sends
        notices on its way back from a lost connection, which a handler may depend on)."""
        for lane in self._noticing:
            lane.put(notice)

    async def flush(self) -> None:
        """Return once every handler has taken everything handed on so far; raise
        HandlersBehindError when one has not (the listener then keeps its previous position)."""
        self._barrier += 1
        number = self._barrier
        # Waited for: the lanes that kept up, or took something since the last flush. One that did
        # neither (hung, or failing) would only cost the listener its patience at every checkpoint.
        kept_up = [lane for lane in self.lanes if lane.passed >= number - 1 or lane.taken != lane.taken_at_flush]
        for lane in self.lanes:
            lane.taken_at_flush = lane.taken
        for lane in self.lanes:
            lane.put_barrier(number)
        deadline = time.monotonic() + self.patience
        while any(lane.passed < number for lane in kept_up):
            self._progress.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                break
        behind = [lane.name for lane in self.lanes if lane.passed < number]
        if behind:
            raise HandlersBehindError(f"handler {', '.join(behind)} has not taken every event yet")

    def stopping(self) -> None:
        """The listener is stopping: no more waiting for room in a lane (what a handler has not
        taken stays after the recorded position)."""
        self._stopping = True
        for lane in self.lanes:
            if lane.room is not None:
                lane.room.set()

    async def close(self, wait: float = 1.0) -> None:
        """Give the lanes up to `wait` seconds to take what they have (the last notices), then stop
        them; a call stuck in a handler's thread is left behind, never waited for."""
        self.stopping()
        with contextlib.suppress(HandlersBehindError):
            patience, self.patience = self.patience, wait
            try:
                await self.flush()
            finally:
                self.patience = patience
        await asyncio.gather(*(lane.close() for lane in self.lanes))
        self._held.flush(force=True)

    def _passed(self) -> None:
        self._progress.set()

    async def _wait_for_room(self, lane: Lane) -> None:
        self._held.add(1, f"handler {lane.name} has {len(lane.queue):,} events waiting; the listener waits "
                          "until it takes some")
        lane.room, lane.low_water = asyncio.Event(), self.max_backlog * 9 // 10
        try:
            while len(lane.queue) > lane.low_water and not self._stopping:
                lane.room.clear()
                await lane.room.wait()
        finally:
            lane.room = None
