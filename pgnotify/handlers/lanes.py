"""One lane per handler: its own queue, its own task and its own thread for sync code, so a
handler that is slow, failing or hung holds up nobody but itself.

A lane takes what the dispatcher puts in it, in order:
- a notification: `handle(notification)`. A call that raises, or overruns the handler's
  `timeout`, is retried with capped exponential backoff; the notifications after it wait behind
  it, in this lane only.
- a state notice: `notice(dict)`, bounded by the handler's timeout (NOTICE_TIMEOUT when it has
  none); one that fails is logged and not retried.
- a barrier (the dispatcher's flush, before the listener records its position): the handler's
  own `flush()`, retried like `handle` until it succeeds; then the lane has passed the barrier,
  that is, taken everything handed on before it.

Sync code (a sync handler, and every thread-sensitive `sync_to_async` call a handler makes,
Django's ORM included) runs in the lane's WorkerThread. An overrun call is given up: async code
is cancelled, and a thread still stuck in sync code is left behind (pgnotify.handlers.threads).
"""

import asyncio
import inspect
import logging
from collections import deque

from asgiref.sync import ThreadSensitiveContext, sync_to_async

from ..exceptions import HandlerTimeoutError, one_line
from ..listener.backoff import backoff_delay
from ..listener.throttle import ThrottledLog
from . import threads
from .threads import WorkerThread

logger = logging.getLogger("pgnotify.handlers")

RETRY_INITIAL = 0.1  # seconds before the first retry of a failed call
RETRY_MAX = 5.0  # a handler that keeps failing is retried every 5 s at most
NOTICE_TIMEOUT = 10.0  # seconds a state notice may take when the handler sets no timeout
CLOSE_TIMEOUT = 2.0  # seconds a handler's close() may take when the listener stops
FAILURE_LOG_INTERVAL = 10.0  # one warning line per handler per interval while it fails
YIELD_EVERY = 256  # items taken in a row before the lane lets the listener run


class Barrier:
    __slots__ = ("number",)

    def __init__(self, number: int):
        self.number = number


def as_async(function):
    """The function as a coroutine function: sync ones run in the lane's thread (they may use the ORM)."""
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call):
        return function
    return sync_to_async(function, thread_sensitive=True)


class Lane:
    def __init__(self, handler, name: str, channels: frozenset | None, timeout: float | None, on_pass):
        self.handler = handler
        self.name = name
        self.channels = channels
        self.timeout = timeout
        if hasattr(handler, "handle"):
            self.handle = as_async(handler.handle)
        elif callable(handler) and not inspect.isclass(handler):
            self.handle = as_async(handler)
        else:
            self.handle = None
        self.notice = as_async(handler.notice) if hasattr(handler, "notice") else None
        self.flush = as_async(handler.flush) if hasattr(handler, "flush") else None
        self.queue: deque = deque()  # what the handler has not taken yet, oldest first
        self.passed = 0  # the newest barrier this lane has passed
        self.taken = 0  # items taken so far
        self.taken_at_flush = 0  # ... when the dispatcher last flushed
        self.attempt = 0  # failed calls in a row
        self.room: asyncio.Event | None = None  # set by the dispatcher while it waits for room here
        self.low_water = 0
        self.thread = WorkerThread(name)
        self._on_pass = on_pass
        self._wake = asyncio.Event()
        self._sleeping = False
        self._task: asyncio.Task | None = None
        self._failures = ThrottledLog(logger, f"handler {name} failed (%d calls)", FAILURE_LOG_INTERVAL)

    # -- the dispatcher's side

    def put(self, item) -> None:
        self.queue.append(item)
        if self._sleeping:
            self._sleeping = False
            self._wake.set()
        elif self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pgnotify handler {self.name}")

    def put_barrier(self, number: int) -> None:
        if not self.queue and self.flush is None:
            self.passed = number  # nothing waiting and nothing to flush: already past it
            return
        self.put(Barrier(number))

    @property
    def behind(self) -> int:
        return len(self.queue)

    async def close(self) -> None:
        """Stop the lane now, then let the handler close its connections (its async `close()`, if
        it has one, for at most CLOSE_TIMEOUT); a call stuck in its thread is left behind."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        close = getattr(self.handler, "close", None)
        if inspect.iscoroutinefunction(close):
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await close()
            except Exception as error:  # closing what may be gone already: say so, go on stopping
                logger.info("handler %s did not close cleanly: %s", self.name, one_line(error))
        self.thread.shutdown(wait=False, cancel_futures=True)
        self._failures.flush(force=True)

    # -- the lane's task

    async def _run(self) -> None:
        threads.current.set(self.thread)
        async with ThreadSensitiveContext(executor=self.thread):
            queue, handle = self.queue, self.handle
            while True:
                if not queue:
                    self._sleeping = True
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = queue[0]
                kind = type(item)
                if kind is Barrier:
                    await self._pass_barriers()
                elif kind is dict:
                    await self._notice(item)
                else:  # a notification: the hot path
                    try:
                        if self.timeout is None:
                            await handle(item)
                        else:
                            await self._call(handle, item)
                    except Exception as error:
                        await self._failed(error, f"a notification on {item.channel}")
                        continue  # retried, in order
                    queue.popleft()
                    if self.attempt:
                        self._recovered()
                if self.room is not None and len(queue) <= self.low_water:
                    self.room.set()
                self.taken += 1
                if not self.taken % YIELD_EVERY:
                    await asyncio.sleep(0)  # a long backlog must not starve the listener

    async def _notice(self, notice: dict) -> None:
        try:
            await self._call(self.notice, notice, seconds=self.timeout or NOTICE_TIMEOUT)
        except Exception as error:
            logger.warning("handler %s failed on a state notice: %s", self.name, one_line(error))
        self.queue.popleft()

    async def _pass_barriers(self) -> None:
        """Flush the handler once for every barrier at the head of the queue."""
        queue = self.queue
        number = 0
        while queue and type(queue[0]) is Barrier:
            number = queue.popleft().number
        while self.flush is not None:
            try:
                await self._call(self.flush)
                break
            except Exception as error:
                await self._failed(error, "flush")
        if self.attempt:
            self._recovered()
        self.passed = number
        self._on_pass()
        self._failures.flush()

    async def _call(self, function, *args, seconds: float | None = None):
        timeout = seconds or self.timeout
        if timeout is None:
            return await function(*args)
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await function(*args)
        except TimeoutError:
            if not scope.expired():
                raise  # the handler's own TimeoutError
            left = " (its thread is left behind)" if self.thread.leave_behind() else ""
            raise HandlerTimeoutError(f"no answer within {timeout:g} s{left}") from None

    async def _failed(self, error: BaseException, what: str) -> None:
        self.attempt += 1
        delay = backoff_delay(self.attempt - 1, RETRY_INITIAL, RETRY_MAX, jitter=False)
        self._failures.add(1, f"last on {what} ({self.behind} waiting, retry in {delay:.1f} s): {one_line(error)}")
        await asyncio.sleep(delay)

    def _recovered(self) -> None:
        self._failures.flush(force=True)
        logger.info("handler %s works again after %d failed calls", self.name, self.attempt)
        self.attempt = 0
