"""Forwarding to a message queue: change events appended to Redis Streams.

One stream per channel (`pgnotify:orders`, ...), one entry per notification with the fields
`id` (the event's id in the event log; absent for notifications that are not change events),
`channel` and `payload` (the JSON text). Enable it in settings:

    PGNOTIFY = {
        "HANDLERS": [
            {"handler": "pgnotify.forwarding.RedisStreamForwarder",
             "channels": ["orders", "products"],
             "options": {"url": "redis://127.0.0.1:6379/0", "maxlen": 100_000}},
        ],
    }

At-least-once, tied to the listener's position: `handle` only buffers; `flush`, which the
listener calls before it records its position, writes the buffer in one pipeline and raises
when Redis does not take it, so the position does not advance past events that are not in
their stream. The dispatcher retries with backoff; after a crash the listener replays from its
position. So an entry may be written twice (a retry after a write whose reply was lost, or a
replay): consumers de-duplicate by `id`.
"""

import logging

from django.conf import settings

from ...extras import require

require("redis", "redis", "RedisStreamForwarder")

import redis.asyncio as redis  # noqa: E402
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class RedisStreamForwarder:
    """Listener handler: XADD every notification to the stream of its channel."""

    def __init__(self, url: str | None = None, prefix: str = "pgnotify:", maxlen: int | None = 100_000,
                 approximate: bool = True, max_buffer: int = 10_000, timeout: float = 5.0):
        self.url = url or getattr(settings, "REDIS_URL", "") or DEFAULT_URL
        self.prefix = prefix
        self.maxlen = maxlen  # per stream; None keeps everything
        self.approximate = approximate  # MAXLEN ~: trimming whole macro nodes is much cheaper
        self.max_buffer = max_buffer
        # No retries inside the client: the dispatcher retries with backoff and holds the position.
        self._client = redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry=Retry(NoBackoff(), 0))
        self._buffer: list[tuple[str, dict]] = []
        self.written = 0

    def stream(self, channel: str) -> str:
        return self.prefix + channel

    async def handle(self, notification) -> None:
        if len(self._buffer) >= self.max_buffer:
            await self.flush()  # raises while Redis is away: the dispatcher keeps this event for later
        fields = {"channel": notification.channel, "payload": notification.payload}
        event = notification.event
        if event is not None:
            fields["id"] = event["id"]
        self._buffer.append((self.stream(notification.channel), fields))

    async def flush(self) -> None:
        if not self._buffer:
            return
        count = len(self._buffer)
        pipe = self._client.pipeline(transaction=False)
        for stream, fields in self._buffer[:count]:
            pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=self.approximate)
        await pipe.execute()  # raises on any failure: the buffer stays, the position holds
        del self._buffer[:count]
        self.written += count

    async def close(self) -> None:
        await self._client.aclose()
