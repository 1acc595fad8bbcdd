"""What every forwarder shares: which notifications it forwards and in what shape, and delivery in
the background, in order, retried with backoff, confirmed before the listener's position moves.

`handle()` puts the message in its queue (one queue per forwarder, or one per channel) and returns;
when `max_buffer` messages wait already, it first waits for room while the destination keeps
confirming (a burst holds the listener back), and raises while the destination fails. The queue's
task sends what waits there at once, in order, up to `batch` messages at a time, and sends the
same head again, with capped exponential backoff, until the destination confirms it.
`flush()`, which the listener calls before it records its position, returns once everything
handed on before the call is confirmed; it raises HandlersBehindError as soon as the destination
fails (or when nothing was confirmed for `timeout` seconds), so the position holds and the
listener replays from there after a crash. Delivery is therefore at least once, in order per
channel, and every message carries the event's `id` for the consumer to de-duplicate by (with its
`database`, for events read from another database than 'default': the message id is then
"ALIAS:id").

Notifications that are not change events (docs/wire-format.md) are skipped unless `raw=True`; then each goes
out as `{"id": "n-<32 hex digits>", "type": "notification", "channel": ..., "payload": <the text
as sent>, "received": <ISO 8601>}`, with table `_` and operation `NOTIFY` where a destination
name needs them. Such notifications are not in the event log: one that arrives while no
listener runs, or that waits in memory when the listener is killed, is lost.
"""

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ...exceptions import HandlerConfigError, HandlersBehindError, one_line
from ...listener.backoff import backoff_delay
from ...listener.throttle import ThrottledLog

logger = logging.getLogger(__name__)

RAW_TABLE, RAW_OP = "_", "NOTIFY"
RETRY_INITIAL = 0.1  # seconds before the first retry of a failed send
RETRY_MAX = 5.0  # a destination that stays away is tried every 2.5 to 5 s (jitter)
FAILURE_LOG_INTERVAL = 10.0  # seconds between two log lines about the same failing destination
CANCEL_AGAIN_AFTER = 0.5  # seconds a closing queue's task may take to end before it is cancelled again
_NOT_A_TOKEN = re.compile(r"[^A-Za-z0-9_:-]")


@dataclass(slots=True)
class Message:
    """One notification as a forwarder sends it."""

    id: int | str  # the event's id in the event log ("ALIAS:id" when read from another database than
    # 'default'), or "n-..." for a raw notification
    channel: str
    table: str
    op: str
    body: bytes  # JSON: the change event as the trigger wrote it, or the raw notification's shape


def message_of(notification, raw: bool = False) -> Message | None:
    """The message for a notification, or None when it is not forwarded."""
    event = notification.event
    if event is not None:
        # Ids are per database: another database's event of the same id is not a repeat.
        ident = event["id"] if "database" not in event else f"{event['database']}:{event['id']}"
        return Message(ident, notification.channel, str(event.get("table", "")), str(event.get("op", "")),
                       notification.payload.encode())
    if not raw:
        return None
    ident = f"n-{uuid.uuid4().hex}"
    body = json.dumps({"id": ident, "type": "notification", "channel": notification.channel,
                       "payload": notification.payload, "received": notification.received.isoformat()},
                      ensure_ascii=False)
    return Message(ident, notification.channel, RAW_TABLE, RAW_OP, body.encode())


def token(text: str) -> str:
    """One word of a routing key or subject: anything but letters, digits, '_', ':' and '-'
    becomes '_' (so a '.' in a channel name cannot add a level)."""
    return _NOT_A_TOKEN.sub("_", text) or "_"


# -- checks of the options every forwarder takes (`check_options` of each class uses them)

def url_problem(url, schemes: tuple[str, ...], what: str) -> str | None:
    if not isinstance(url, str):
        return f"{what} must be a URL string, not {type(url).__name__}"
    try:
        parts = urlsplit(url)
        shown = redact(url)  # a password in the URL stays out of `manage.py check`'s output
    except ValueError as error:
        return f"{what} is not a URL: {error}"
    if parts.scheme not in schemes:
        return f"{what} {shown!r} must start with {' or '.join(s + '://' for s in schemes)}"
    if not parts.hostname and parts.scheme != "unix":
        return f"{what} {shown!r} has no host"
    return None


def redact(url: str) -> str:
    """The URL for log lines: without its password and query string (either may hold a secret)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc, query="***" if parts.query else "", fragment=""))


def flag_problems(options, *names: str) -> list[str]:
    return [f"{name} must be True or False, not {getattr(options, name)!r}" for name in names
            if not isinstance(getattr(options, name), bool)]


@dataclass(frozen=True, kw_only=True)
class Options:
    """The options every forwarder takes, with their defaults. Each forwarder declares all of its
    own once, as a subclass: the class takes them as its arguments (its signature), its check
    reports what is wrong with them, and docs/forwarding/ lists them with these defaults."""

    batch: int = 1000
    timeout: float = 10.0
    raw: bool = False
    max_buffer: int = 10_000

    def problems(self) -> list[str]:
        problems = []
        batch, timeout, max_buffer = self.batch, self.timeout, self.max_buffer
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10_000:
            problems.append(f"batch must be a whole number from 1 to 10,000, not {batch!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            problems.append(f"timeout must be a number of seconds above 0 and at most 300, not {timeout!r}")
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            problems.append(f"max_buffer must be a whole number of at least 1, not {max_buffer!r}")
        return problems + flag_problems(self, "raw")


class _Queue:
    """Messages handed on in one order, and the task that delivers them."""

    __slots__ = ("confirmed", "error", "handed", "task", "waiting", "wake")

    def __init__(self):
        self.waiting: deque[Message] = deque()  # handed on, not confirmed yet, oldest first
        self.handed = 0
        self.confirmed = 0
        self.error: BaseException | None = None  # the last attempt's failure, None once one succeeds
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()


class Forwarder:
    """Base of the forwarders: subclasses declare their `Options`, name their destination and
    implement `send(batch)` (return once the destination confirmed every message, raise
    otherwise) and `disconnect()`."""

    Options: type[Options] = Options

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The class takes its options as arguments (inspect.signature reads __signature__, which
        # mypy does not know on a class).
        cls.__signature__ = inspect.signature(cls.Options)  # type: ignore[attr-defined]

    def __init__(self, **arguments):
        self.options = options = self.Options(**arguments)
        problems = options.problems()
        if problems:  # the system check reports the same line (check_options)
            raise HandlerConfigError(problems[0])
        self.raw = options.raw
        self.batch = options.batch
        # Not `timeout`: the dispatcher would take that for a bound on every call, flush() included,
        # which may rightly take longer (a full buffer going out, confirmed batch after batch).
        self.send_timeout = options.timeout  # seconds for one connection or one batch's confirmations
        self.max_buffer = options.max_buffer
        self.forwarded = 0  # messages the destination confirmed
        self.skipped = 0  # notifications that are not change events, not forwarded
        self.failures = 0  # attempts that failed (each retried)
        self._queues: dict[str, _Queue] = {}
        self._waiting = 0
        self._progress = asyncio.Event()
        self._failing: ThrottledLog | None = None  # made on the first failure: subclasses set the destination

    @classmethod
    def check_options(cls, **options) -> list[str]:
        """What is wrong with these options, one line each (the class's signature took them)."""
        return cls.Options(**options).problems()

    @property
    def destination(self) -> str:
        """For log lines and errors: the URL, exchange or subject prefix."""
        return "?"

    def describe(self) -> str:
        return self.destination

    def queue_key(self, message: Message) -> str:
        """Messages of one queue are sent one batch at a time, in order; queues run side by side."""
        return ""

    # -- the handler

    async def handle(self, notification) -> None:
        message = message_of(notification, self.raw)
        if message is None:
            self.skipped += 1
            return
        if self._waiting >= self.max_buffer:
            await self._make_room()
        queue = self._queues.get(key := self.queue_key(message))
        if queue is None:
            queue = self._queues[key] = _Queue()
        queue.waiting.append(message)
        queue.handed += 1
        self._waiting += 1
        self._start(queue)

    async def flush(self) -> None:
        """Return once every message handed on so far is confirmed; raise HandlersBehindError when
        the destination fails, or confirms nothing for `timeout` seconds."""
        targets = [(queue, queue.handed) for queue in self._queues.values() if queue.confirmed < queue.handed]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout
        confirmed = sum(queue.confirmed for queue, _ in targets)
        for queue, _ in targets:
            self._start(queue)  # after a close(), what waits goes out again
        while behind := [queue for queue, target in targets if queue.confirmed < target]:
            error = next((queue.error for queue in behind if queue.error is not None), None)
            if error is not None:
                raise HandlersBehindError(f"{self._count(behind)} messages not confirmed by {self.describe()}: "
                                          f"{one_line(error)}")
            now_confirmed = sum(queue.confirmed for queue, _ in targets)
            if now_confirmed > confirmed:  # progress: the destination is slow, not gone
                confirmed, deadline = now_confirmed, loop.time() + self.send_timeout
            if loop.time() >= deadline:
                raise HandlersBehindError(f"{self._count(behind)} messages not confirmed by {self.describe()} "
                                          f"within {self.send_timeout} s")
            await self._next_progress(deadline - loop.time())

    async def notice(self, notice: dict) -> None:
        if notice.get("state") == "stopped":
            await self.close()

    async def close(self) -> None:
        """Stop the queues' tasks and close the connection. What waits stays, for a later start."""
        tasks = [queue.task for queue in self._queues.values() if queue.task is not None]
        # Cancelled again until they end: on Python 3.11, asyncio.wait_for (a disconnect's, between
        # two attempts) swallows a cancel that comes as what it waits for completes.
        while pending := [task for task in tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CANCEL_AGAIN_AFTER)
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in self._queues.values():
            queue.task, queue.wake = None, asyncio.Event()
        self._progress = asyncio.Event()  # a later start may run in another event loop
        await self.disconnect()

    @property
    def waiting(self) -> int:
        """Messages handed on and not confirmed yet."""
        return self._waiting

    # -- what subclasses implement

    async def send(self, batch: list[Message]) -> None:
        raise NotImplementedError

    async def disconnect(self) -> None:
        """Drop the connection (after a failure, and on close); the next send connects again."""

    # -- delivery

    def _start(self, queue: _Queue) -> None:
        if queue.task is None or queue.task.done():
            queue.task = asyncio.create_task(self._deliver(queue), name=f"{type(self).__name__} queue")
        queue.wake.set()

    async def _deliver(self, queue: _Queue) -> None:
        attempt = 0
        while True:
            if not queue.waiting:
                queue.wake.clear()
                await queue.wake.wait()
                continue
            batch = list(itertools.islice(queue.waiting, self.batch))
            try:
                await self.send(batch)
            except Exception as error:
                if isinstance(error, TimeoutError) and not str(error):
                    error = TimeoutError(f"no confirmation from {self.describe()} within {self.send_timeout} s")
                queue.error = error
                self.failures += 1
                self._progress.set()
                self._failure_log().add(detail=one_line(error))
                await self.disconnect()
                await asyncio.sleep(backoff_delay(attempt, RETRY_INITIAL, RETRY_MAX))
                attempt += 1
                continue
            if attempt:
                logger.info("%s to %s: delivering again after %d failed attempts", type(self).__name__,
                            self.describe(), attempt)
            attempt, queue.error = 0, None
            for _ in batch:
                queue.waiting.popleft()
            queue.confirmed += len(batch)
            self._waiting -= len(batch)
            self.forwarded += len(batch)
            self._progress.set()

    def _failure_log(self) -> ThrottledLog:
        if self._failing is None:
            where = f"{type(self).__name__} to {self.describe()}".replace("%", "%%")
            self._failing = ThrottledLog(logger, where + ": %d failed attempts", FAILURE_LOG_INTERVAL)
        return self._failing

    async def _make_room(self) -> None:
        """Wait while a healthy destination works through a full buffer (the listener waits too);
        raise when it is failing, or confirms nothing for `timeout` seconds: the dispatcher then
        keeps this notification and the ones behind it, in order, and tries again later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout
        while self._waiting >= self.max_buffer:
            error = next((queue.error for queue in self._queues.values() if queue.error is not None), None)
            if error is not None or loop.time() >= deadline:
                raise HandlersBehindError(f"{self._waiting} messages wait for {self.describe()}: "
                                          f"{one_line(error) if error is not None else 'not confirmed yet'}")
            for queue in self._queues.values():
                if queue.waiting:
                    self._start(queue)
            await self._next_progress(deadline - loop.time())

    async def _next_progress(self, seconds: float) -> None:
        """Until a queue confirms or fails something, for `seconds` at most."""
        self._progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), seconds)

    def _count(self, queues) -> int:
        return sum(len(queue.waiting) for queue in queues)

