"""Group fan-out per process, not per consumer: the dashboards' group and each chat room's.

A channel layer delivers a group message once to every member channel: with N dashboards in a
process that is N round trips (Redis) or N stored rows (channels_postgres) per frame, and
channels_redis drops what exceeds a channel's capacity. Instead, the first consumer of a group in
a process subscribes ONE channel to the group; a task receives from it and writes each frame's
ready-made text to every local consumer's websocket. Consumers register on connect and leave on
disconnect; the last one out ends the subscription.

Under daphne a frame is framed once (autobahn's prepared message) and the same bytes are written
to each dashboard's connection (pgnotify.web.daphne), so the per-dashboard cost is one buffered
socket write rather than a pass through the ASGI send chain and the websocket framing. Elsewhere
(other servers, tests) frames go through the consumer's own `send`.
"""

import asyncio
import logging
import time

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from ..exceptions import one_line
from ..listener.backoff import backoff_delay
from ..listener.throttle import ThrottledLog
from .daphne import Connection, daphne_websocket
from .frames import CHANGES_PREFIX, CHANGES_SUFFIX, FRAME_TYPE
from .layers import dispatch

logger = logging.getLogger(__name__)

MAX_MERGED_CHARS = 256 * 1024  # `changes` frames waiting together are merged up to this size
YIELD_EVERY = 100  # websocket writes between yields, so the receiver keeps draining the layer meanwhile
SUBSCRIBE_WAIT = 5.0  # seconds a connecting consumer waits for the subscription before it goes on
REFRESH_INTERVAL = 3600.0  # seconds between renewals of the membership (layers expire groups)
BACKOFF_INITIAL, BACKOFF_MAX = 0.2, 5.0
# A sender first heard of this long after subscribing sent messages before that were lost (a
# sender's numbers start at 1); sooner, it was sending before this process subscribed.
SENDER_GRACE = 10.0
GAP_LOG_INTERVAL = 60.0
# While frames keep coming to many sockets, rounds of writes are spaced and what arrives meanwhile
# is merged into the next round's frames. A write is a send() whose loopback delivery the kernel
# does right there (7 to 25 µs on the test machine under load): one round per change to 1,000
# sockets at 100 changes/s took the whole process and its p99 went to 0.8 s. Up to UNSPACED_SOCKETS
# a round goes as soon as its frames are there (100 dashboards at 1,000 changes/s keep a p99 under
# 10 ms; spaced, it rose by 3 ms); each socket more spaces rounds by ROUND_SPACING (1,000 sockets:
# 30 ms apart, at most 33 rounds a second), at most MAX_ROUND_SPACING.
UNSPACED_SOCKETS = 250
ROUND_SPACING = 40e-6
MAX_ROUND_SPACING = 0.05


class Broadcaster:
    """One group subscription of one process (one event loop, one channel layer)."""

    def __init__(self, layer, group: str):
        self.layer = layer
        self.group = group
        self.consumers: dict[AsyncWebsocketConsumer, bool] = {}  # consumer -> accepted (frames go to those only)
        self._connections: dict[AsyncWebsocketConsumer, Connection] = {}  # consumer -> its daphne websocket, if any
        self.channel_name: str | None = None
        self.subscribed = asyncio.Event()
        self.frames = 0
        self._inbox: list[dict] = []  # received, not yet written
        self._wake = asyncio.Event()
        self._writing = False  # the writer is in a round (what arrives meanwhile waits for it)
        self._resume_at = 0.0  # (monotonic) no round before this: the spacing after the last one
        self._tasks: list[asyncio.Task] = []
        self._last_seq: dict[str, int] = {}  # sender id -> the last number received from it
        self._subscribed_at = 0.0
        self.gaps = 0  # times messages were found missing
        self._gap_log = ThrottledLog(logger, f"group {group}: messages missed %s times (channel layer over "
                                     "capacity?); live subscriptions caught up", GAP_LOG_INTERVAL)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._write_forever()),
                       loop.create_task(self._renew())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.channel_name is not None:
            try:
                await self.layer.group_discard(self.group, self.channel_name)
            except Exception as error:  # the layer is away: its group expiry cleans up instead
                logger.warning("dashboard fan-out could not leave %s: %s", self.group, error)

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                if self.channel_name is None:
                    self.channel_name = await dispatch.new_receive_channel(self.layer, dispatch.FANOUT_CHANNEL)
                await self.layer.group_add(self.group, self.channel_name)
                if not self.subscribed.is_set():
                    self._subscribed_at = time.monotonic()
                self.subscribed.set()
                attempt = 0
                await self._receive_forever(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # backend errors vary; the subscription must come back
                delay = backoff_delay(attempt, BACKOFF_INITIAL, BACKOFF_MAX)
                attempt += 1
                logger.warning("dashboard fan-out lost its channel layer (%s); re-subscribing in %.1fs",
                               one_line(error), delay)
                await asyncio.sleep(delay)

    async def _receive_forever(self, channel_name: str) -> None:
        # Receiving does not wait for the websockets: the layer's channel (whose capacity is
        # small) is drained at once, and what arrives while frames are written is merged (see
        # coalesce). Except for a lone message, all that was waiting, while the writer is idle:
        # that one is written right here (one hand-over less).
        batches = dispatch.receives_in_batches(self.layer, channel_name)
        while True:
            messages = await dispatch.receive_batch(self.layer, channel_name)
            self.frames += len(messages)
            missed = [self._missed_before(message) for message in messages]  # each: updates its sender's number
            if any(missed):
                self._gap()
            if (batches and len(messages) == 1 and not self._writing and not self._inbox
                    and time.monotonic() >= self._resume_at):
                started = time.monotonic()
                await self.deliver(messages[0])  # idle: written at once, not handed over to the writer
                self._pause_after(started)
                continue
            self._inbox.extend(messages)  # (not extend(await ...): the writer swaps the list meanwhile)
            self._wake.set()

    def _missed_before(self, message: dict) -> bool:
        """Whether messages of this one's sender were lost before it (its numbers jump)."""
        sender, seq = message.get("sender"), message.get("seq")
        if not isinstance(sender, str) or not isinstance(seq, int):
            return False  # not from a DashboardSender
        last = self._last_seq.get(sender)
        self._last_seq[sender] = seq if last is None else max(last, seq)
        if last is None:
            return seq > 1 and time.monotonic() - self._subscribed_at > SENDER_GRACE
        return seq > last + 1

    def _gap(self) -> None:
        """Consumers whose state follows the messages (live streams) resynchronise; the others
        (dashboards: statistics) go on."""
        self.gaps += 1
        self._gap_log.add(1)
        for consumer in list(self.consumers):
            missed = getattr(consumer, "missed_messages", None)
            if missed is not None:
                missed()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._writing = True
            try:
                pause = self._resume_at - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)  # what arrives meanwhile joins this round
                waiting, self._inbox = self._inbox, []
                started = time.monotonic()
                for message in coalesce(waiting):
                    await self.deliver(message)
                self._pause_after(started)
            finally:
                self._writing = False

    def _pause_after(self, started: float) -> None:
        self._resume_at = started + round_spacing(len(self.consumers))

    async def _renew(self) -> None:
        # A consumer's membership is renewed by its own reconnects; this one lives as long as any
        # dashboard of the process does, so it renews itself before the layer's group expiry.
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            if self.subscribed.is_set():
                try:
                    await self.layer.group_add(self.group, self.channel_name)
                except Exception as error:
                    logger.warning("dashboard fan-out could not renew %s: %s", self.group, error)

    async def deliver(self, message: dict) -> None:
        """One frame to every local consumer, serialised once (by the sender) and framed once."""
        text = message.get("text") if message.get("type") == FRAME_TYPE else None
        prepared = None
        for written, (consumer, accepted) in enumerate(list(self.consumers.items()), 1):
            if not accepted:
                continue
            if written % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the receiver drain the layer meanwhile
            try:
                if text is None:
                    # Any other group message (a chat room's): the consumer's handler, called
                    # directly. consumer.dispatch() would first hop to a thread to close stale
                    # database connections, once per consumer; these handlers use none.
                    await getattr(consumer, get_handler_name(message))(message)
                    continue
                connection = self._connections.get(consumer)
                if connection is not None and connection.open():
                    if prepared is None:
                        prepared = connection.protocol.factory.prepareMessage(text.encode())
                    connection.write(prepared)
                else:  # no daphne connection, or not open (yet, or any more): the usual way
                    await consumer.send(text_data=text)
            except Exception as error:  # a connection that went away without saying so
                logger.info("dashboard fan-out dropped a consumer: %s", error)
                self.consumers.pop(consumer, None)
                self._connections.pop(consumer, None)

    def accepted(self, consumer) -> None:
        """From now on `consumer` receives the group's frames (written straight to its daphne
        connection when it has one)."""
        if consumer in self.consumers:  # unless it left meanwhile
            self.consumers[consumer] = True
            protocol = daphne_websocket(consumer)
            if protocol is not None:
                self._connections[consumer] = Connection(protocol)

    def connection(self, consumer) -> Connection | None:
        """The daphne websocket the broadcaster writes `consumer`'s frames to, once accepted."""
        return self._connections.get(consumer)

    def discard(self, consumer) -> None:
        self.consumers.pop(consumer, None)
        self._connections.pop(consumer, None)


def round_spacing(sockets: int) -> float:
    """Seconds from the start of a round of writes to `sockets` sockets to the next one's."""
    return min(max(0, sockets - UNSPACED_SOCKETS) * ROUND_SPACING, MAX_ROUND_SPACING)


def coalesce(messages: list[dict]) -> list[dict]:
    """Consecutive `changes` frames merged into one (events in order, size-capped); every other
    message stays as it is and where it is. Under load one websocket write per dashboard carries
    many frames' events instead of one write each."""
    merged: list[dict] = []
    for message in messages:
        text = _changes_text(message)
        last = _changes_text(merged[-1]) if merged else None
        if text is not None and last is not None and len(last) + len(text) <= MAX_MERGED_CHARS:
            merged[-1] = {"type": FRAME_TYPE, "text": last[: -len(CHANGES_SUFFIX)] + "," + text[len(CHANGES_PREFIX):]}
        else:
            merged.append(message)
    return merged


def _changes_text(message: dict) -> str | None:
    """The text of a `changes` frame with at least one event, else None."""
    text = message.get("text") if message.get("type") == FRAME_TYPE else None
    if (text is None or len(text) <= len(CHANGES_PREFIX) + len(CHANGES_SUFFIX)
            or not text.startswith(CHANGES_PREFIX) or not text.endswith(CHANGES_SUFFIX)):
        return None
    return text


# (event loop, channel layer, group) -> its broadcaster; tests run a new loop per test.
_broadcasters: dict[tuple, Broadcaster] = {}


def _key(layer, group: str) -> tuple:
    return asyncio.get_running_loop(), layer, group


async def join(consumer, layer, group: str, accept) -> Broadcaster:
    """Registers `consumer`; the first one in this process starts the subscription. Once it is in
    place (or after SUBSCRIBE_WAIT while the layer is away) calls `accept()` (the websocket
    handshake), and from then on the consumer receives the group's frames."""
    for stale in [key for key in _broadcasters if key[0].is_closed()]:
        del _broadcasters[stale]
    key = _key(layer, group)
    broadcaster = _broadcasters.get(key)
    if broadcaster is None:
        broadcaster = _broadcasters[key] = Broadcaster(layer, group)
        broadcaster.start()
    broadcaster.consumers[consumer] = False  # keeps the subscription alive; no frames before accept
    try:
        await asyncio.wait_for(broadcaster.subscribed.wait(), SUBSCRIBE_WAIT)
    except TimeoutError:
        pass  # frames flow once the layer is back
    await accept()
    broadcaster.accepted(consumer)
    return broadcaster


async def leave(consumer, layer, group: str) -> None:
    """Unregisters `consumer`; the last one out ends the subscription."""
    key = _key(layer, group)
    broadcaster = _broadcasters.get(key)
    if broadcaster is None:
        return
    broadcaster.discard(consumer)
    if not broadcaster.consumers:
        del _broadcasters[key]
        await broadcaster.stop()


def broadcaster_for(layer, group: str) -> Broadcaster | None:
    """This loop's broadcaster of `group`, if any consumer is registered (tests, metrics)."""
    return _broadcasters.get(_key(layer, group))
