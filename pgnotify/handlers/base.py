"""What happens to a notification after the listener: the dispatcher hands it to each handler
(output, websocket groups, cache invalidation, the ones in PGNOTIFY["HANDLERS"]).

A handler is a callable taking the Notification (sync or async) or an object with any of
`handle(notification)`, `notice(dict)` and `flush()`. A handler that raises is logged on one
line and retried with capped exponential backoff; the events after the failed one wait behind
it, in order, and the other handlers go on meanwhile.

The listener calls `flush()` before it records its position, so the position only advances
over events that every handler has taken. `flush()` retries what is waiting and calls each
handler's own `flush()`; when a handler is still failing after `patience` seconds, it raises
HandlersBehindError and the listener keeps its previous position, at every checkpoint, until
the handler recovers. Waiting events are kept in memory (nothing is dropped); past
`max_backlog` of them, the dispatcher waits for the failing handler before it takes the next
event, holding the listener back rather than losing anything.
"""

import asyncio
import inspect
import logging
import time
from collections import deque

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from .. import conf
from ..exceptions import HandlerConfigError, HandlersBehindError, one_line
from ..listener.backoff import backoff_delay

logger = logging.getLogger(__name__)

RETRY_INITIAL = 0.1  # seconds before the first retry of a failed handler
RETRY_MAX = 5.0  # retries of a handler that keeps failing: one every 5 s at most
FLUSH_PATIENCE = 1.0  # seconds a flush waits on a failing handler before holding the position back
MAX_BACKLOG = 100_000  # events kept per failing handler before the listener is held back


class Filtered:
    """A configured handler that only sees notifications on some channels."""

    def __init__(self, handler, channels):
        self.handler = handler
        self.channels = frozenset(channels)

    def attach(self, listener) -> None:
        if hasattr(self.handler, "attach"):
            self.handler.attach(listener)

    def __repr__(self) -> str:
        return f"{_name(self.handler)} on {', '.join(sorted(self.channels))}"


def load_handler(entry):
    """A handler from a PGNOTIFY['HANDLERS'] entry: "dotted.path" or
    {"handler": "dotted.path", "channels": [...], "options": {...}}. A class is instantiated
    (with the options as keyword arguments); a function is the handler itself."""
    if isinstance(entry, str):
        entry = {"handler": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("handler"), str):
        raise HandlerConfigError(f"invalid handler entry {entry!r}: use a dotted path or a dict with 'handler'")
    unknown = set(entry) - {"handler", "channels", "options"}
    if unknown:
        raise HandlerConfigError(f"handler entry {entry['handler']!r} has unknown keys: {', '.join(sorted(unknown))}")
    try:
        target = import_string(entry["handler"])
    except ImportError as error:
        raise HandlerConfigError(f"cannot import handler {entry['handler']!r}: {error}") from error
    options = entry.get("options") or {}
    if inspect.isclass(target):
        handler = target(**options)
    elif options:
        raise HandlerConfigError(f"handler {entry['handler']!r} is a function: it takes no options")
    else:
        handler = target
    channels = entry.get("channels")
    if channels is None:
        return handler
    if isinstance(channels, str) or not all(isinstance(c, str) for c in channels):
        raise HandlerConfigError(f"'channels' of handler {entry['handler']!r} must be a list of channel names")
    return Filtered(handler, channels)


def websocket_layer_configured() -> bool:
    """True when the project has a default channel layer to forward changes to websockets with."""
    return "default" in (getattr(settings, "CHANNEL_LAYERS", None) or {})


def builtin_handlers() -> list[str]:
    """Dotted paths of the handlers every listener runs before PGNOTIFY['HANDLERS']: the websocket
    groups (when there is a channel layer), cache invalidation, and those contributed by installed
    apps (e.g. the chat's)."""
    paths = ["pgnotify.handlers.cache.CacheInvalidator"]
    if websocket_layer_configured():
        paths = ["pgnotify.handlers.groups.GroupForwarder", *paths, *conf.contributed("handlers")]
    return paths


def configured_handlers() -> list:
    return [load_handler(entry) for entry in [*builtin_handlers(), *conf.get("HANDLERS")]]


def _name(handler) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


def _as_async(function):
    """The function as a coroutine function: sync ones run in a worker thread (they may use the ORM)."""
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call):
        return function
    return sync_to_async(function, thread_sensitive=True)


class _Slot:
    """One handler and its retry state."""

    __slots__ = ("attempt", "backlog", "channels", "flush", "handle", "handler", "name", "notice", "retry_at")

    def __init__(self, handler):
        channels = None
        if isinstance(handler, Filtered):
            channels, handler = handler.channels, handler.handler
        elif isinstance(getattr(handler, "channels", None), frozenset | set):
            channels = frozenset(handler.channels)  # a handler class may declare the channels it wants
        self.handler = handler
        self.name = _name(handler)
        self.channels = channels
        if hasattr(handler, "handle"):
            self.handle = _as_async(handler.handle)
        elif callable(handler) and not inspect.isclass(handler):
            self.handle = _as_async(handler)
        else:
            self.handle = None
        self.notice = _as_async(handler.notice) if hasattr(handler, "notice") else None
        self.flush = _as_async(handler.flush) if hasattr(handler, "flush") else None
        self.backlog: deque = deque()  # events waiting behind a failed one, oldest first
        self.attempt = 0
        self.retry_at = 0.0

    def failed(self, error: BaseException, what: str) -> None:
        self.attempt += 1
        delay = backoff_delay(self.attempt - 1, RETRY_INITIAL, RETRY_MAX, jitter=False)
        self.retry_at = time.monotonic() + delay
        logger.warning("handler %s failed on %s (attempt %d, %d waiting, retry in %.1f s): %s",
                       self.name, what, self.attempt, len(self.backlog), delay, one_line(error))

    @property
    def failing(self) -> bool:
        return self.attempt > 0


class Dispatcher:
    """The listener's sink: fans each notification out to the handlers that want its channel."""

    def __init__(self, handlers, patience: float = FLUSH_PATIENCE, max_backlog: int = MAX_BACKLOG):
        self.slots = [_Slot(handler) for handler in handlers]
        self.patience = patience
        self.max_backlog = max_backlog
        self._handling = [slot for slot in self.slots if slot.handle is not None]

    @property
    def handlers(self) -> list:
        return [slot.handler for slot in self.slots]

    async def handle(self, notification) -> None:
        channel = notification.channel
        for slot in self._handling:
            if slot.channels is not None and channel not in slot.channels:
                continue
            if slot.backlog:  # failing: this event waits behind the one that failed
                slot.backlog.append(notification)
                if len(slot.backlog) > self.max_backlog:
                    await self._wait_for(slot)
                elif time.monotonic() >= slot.retry_at:
                    await self._retry(slot)
                continue
            try:
                await slot.handle(notification)
            except Exception as error:
                slot.backlog.append(notification)
                slot.failed(error, f"a notification on {channel}")

    async def notice(self, notice: dict) -> None:
        for slot in self.slots:
            if slot.notice is not None:
                try:
                    await slot.notice(notice)
                except Exception as error:
                    logger.warning("handler %s failed on a state notice: %s", slot.name, one_line(error))

    async def flush(self) -> None:
        """Return once every handler has taken everything; raise HandlersBehindError when one
        has not within `patience` seconds (the listener then keeps its previous position)."""
        deadline = time.monotonic() + self.patience
        behind = [slot.name for slot in self.slots if not await self._settle(slot, deadline)]
        if behind:
            raise HandlersBehindError(f"handler {', '.join(behind)} has not taken every event yet")

    # -- retries

    async def _retry(self, slot: _Slot) -> None:
        """Hand the waiting events on in order, up to the first that fails again."""
        backlog = slot.backlog
        while backlog:
            try:
                await slot.handle(backlog[0])
            except Exception as error:
                slot.failed(error, f"a notification on {backlog[0].channel}")
                return
            backlog.popleft()
        slot.attempt = 0

    async def _settle(self, slot: _Slot, deadline: float) -> bool:
        """Retry `slot` (waiting out its backoff) until it has taken everything; False when its
        next retry would come after `deadline`."""
        while True:
            if slot.failing:
                delay = slot.retry_at - time.monotonic()
                if time.monotonic() + max(delay, 0.0) > deadline:
                    return False
                if delay > 0:
                    await asyncio.sleep(delay)
            if slot.backlog:
                await self._retry(slot)
                if slot.backlog:
                    continue
            if slot.flush is None:
                return True
            try:
                await slot.flush()
            except Exception as error:
                slot.failed(error, "flush")
                continue
            slot.attempt = 0
            return True

    async def _wait_for(self, slot: _Slot) -> None:
        logger.warning("handler %s has %d events waiting: holding the listener until it recovers",
                       slot.name, len(slot.backlog))
        await self._settle(slot, float("inf"))
