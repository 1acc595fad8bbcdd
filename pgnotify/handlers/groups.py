"""The listener's websocket handler: hands change events, statistics and state notices to the
dashboard's channel-layer group (the frame format is pgnotify.web.frames).

Events are batched by back-pressure, not by a timer: the first event after a quiet spell goes
out at once; while a group message is in flight the next events queue up and leave together in
the following one, and no sooner than MIN_FRAME_INTERVAL after it. So an idle dashboard sees each
change immediately, and a busy one gets many events per group message instead of one round trip
per event.
"""

import asyncio
import logging
import secrets
import time
from collections import deque

from channels.layers import get_channel_layer

from ..exceptions import one_line
from ..listener.backoff import backoff_delay
from ..listener.throttle import ThrottledLog
from ..web.frames import CHANGES, CHECKPOINT, DASHBOARD_GROUP, STATS, frame, notice_frame
from ..web.layers import dispatch

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # events per frame: keeps one websocket frame well under a megabyte
MAX_PENDING = 20_000  # kept for retry while the channel layer is unreachable; older ones are dropped
SEND_TIMEOUT = 5.0  # seconds one group_send may take before the batch is retried later
STATS_INTERVAL = 1.0
# Busy spells: at most one `changes` group message per interval. A layer whose send is quick
# (Redis) would otherwise carry one event per message, and its receiving side (several round trips
# per message, per process) falls behind and drops past the channel's capacity.
MIN_FRAME_INTERVAL = 0.004
RETRY_INITIAL, RETRY_MAX = 0.25, 5.0  # after a failed send, events wait this long before the next try
LOG_INTERVAL = 10.0  # one line per kind of trouble per interval, with a count


class DashboardSender:
    """Listener handler: change events to the dashboard group in batches, listener statistics
    every second and state notices as they happen."""

    def __init__(self, channel_layer=None, group: str = DASHBOARD_GROUP):
        self._layer = channel_layer
        self.group = group
        self.listener = None
        self._pending: list[dict] = []
        self._sender: asyncio.Task | None = None
        self._notices: deque[dict] = deque(maxlen=100)
        self._notice_sender: asyncio.Task | None = None
        self._stats_sent = 0.0
        self._changes_sent = 0.0  # monotonic time of the last `changes` group message
        self.frames_sent = 0
        self.events_sent = 0
        self.taken = 0  # notifications taken (compared with the listener's count at a checkpoint)
        self.dropped = 0
        self._failures = 0  # failed sends in a row
        self._retry_at = 0.0
        self._dropped_log = ThrottledLog(logger, "channel layer not keeping up: dropped %s dashboard events",
                                         LOG_INTERVAL)
        self._failed_log = ThrottledLog(logger, f"group_send to {group} failed %s times", LOG_INTERVAL)
        # Every group message carries (sender, seq): a receiving process that misses one (a layer
        # drops past a channel's capacity, silently) sees the gap (pgnotify.web.fanout).
        self.sender_id = secrets.token_hex(8)
        self._seq = 0

    @property
    def layer(self):
        if self._layer is None:
            self._layer = get_channel_layer()
        return self._layer

    def attach(self, listener) -> None:
        """Called by the runner: the listener whose statistics the dashboard shows."""
        self.listener = listener

    # -- the listener's sink interface

    async def handle(self, notification) -> None:
        self.taken += 1
        event = notification.event
        if event is None:
            return
        self._pending.append(event)
        if len(self._pending) > MAX_PENDING:
            overflow = len(self._pending) - MAX_PENDING
            del self._pending[:overflow]
            self.dropped += overflow
            self._dropped_log.add(overflow)
        if (self._sender is None or self._sender.done()) and time.monotonic() >= self._retry_at:
            self._sender = asyncio.create_task(self._drain())

    async def notice(self, notice: dict) -> None:
        # Called from the listener's reconnect loop: a slow or unreachable channel layer must not
        # hold up its retries or its shutdown, so notices leave in the background, in order.
        self._notices.append(notice)
        if self._notice_sender is None or self._notice_sender.done():
            self._notice_sender = asyncio.create_task(self._send_notices())

    async def _send_notices(self) -> None:
        while self._notices:
            await self._send(self.group, notice_frame(self._notices.popleft()))
        await self._send_stats()

    async def flush(self) -> None:
        """Deliver everything pending (the listener calls this before recording its position)."""
        if self._sender is not None and not self._sender.done():
            await self._sender
        if self._pending:
            await self._drain()
        await self._send_checkpoint()
        if time.monotonic() - self._stats_sent >= STATS_INTERVAL:
            await self._send_stats()
        self._dropped_log.flush()
        self._failed_log.flush()

    # -- sending

    async def _drain(self) -> None:
        while self._pending:
            wait = self._changes_sent + MIN_FRAME_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # events arriving meanwhile join this batch
            self._changes_sent = time.monotonic()
            batch = self._pending[:MAX_BATCH]
            del self._pending[: len(batch)]
            if not await self._send(self.group, frame({"type": CHANGES, "events": batch})):
                self._pending[:0] = batch  # retried on the next event or flush
                return
            self.frames_sent += 1
            self.events_sent += len(batch)

    async def _send_checkpoint(self) -> None:
        # For live streams (pgnotify.web.live): the listener's checkpoint snapshot, behind every
        # event it covers. Only when this handler has sent all the listener handed on (a lane that
        # fell behind flushes late, when the listener's checkpoint may already be a newer one).
        listener = self.listener
        snapshot = getattr(listener, "checkpoint", None)
        if snapshot is None or self._pending or self.taken != getattr(listener, "handed_on", None):
            return
        await self._send(self.group, frame({"type": CHECKPOINT, "snapshot": snapshot, "t": round(time.time(), 3)}))

    async def _send_stats(self) -> None:
        self._stats_sent = time.monotonic()
        if self.listener is None:
            return
        snapshot = self.listener.stats.snapshot(rates=False)  # the page computes rates from the counts
        snapshot["name"] = self.listener.options.name
        snapshot["database"] = self.listener.options.database
        await self._send(self.group, frame({"type": STATS, **snapshot}))

    async def _send(self, group: str, message: dict) -> bool:
        # Numbered before sending: a failed send (it may have arrived or not) leaves a gap the
        # receivers treat as a loss, never a loss they cannot see.
        self._seq += 1
        message = {**message, "sender": self.sender_id, "seq": self._seq}
        try:
            async with asyncio.timeout(SEND_TIMEOUT):  # (wait_for would first start a task of its own)
                await dispatch.group_send(self.layer, group, message)
        except Exception as error:  # the layer's own errors vary by backend; the listener must go on
            if isinstance(error, TimeoutError):
                error = TimeoutError(f"no answer within {SEND_TIMEOUT:g} s")
            self._failed_log.add(1, one_line(error))
            self._retry_at = time.monotonic() + backoff_delay(self._failures, RETRY_INITIAL, RETRY_MAX)
            self._failures += 1
            return False
        if self._failures:
            self._failed_log.flush(force=True)
            logger.info("group_send to %s works again", group)
            self._failures = 0
        return True
