"""Forwarding to Redis Streams: change events appended to one stream per channel.

One stream per channel (`pgnotify:orders`, ...), one entry per change event with the fields `id`
(the event's id in the event log), `channel` and `payload` (the change event as JSON). Enable it in
settings (docs/forwarding/redis-streams.md has a consumer):

    PGNOTIFY = {
        "HANDLERS": [
            {"handler": "pgnotify.forwarding.RedisStreamForwarder",
             "channels": ["orders", "products"],
             "options": {"url": "redis://127.0.0.1:6379/0", "maxlen": 100_000}},
        ],
    }

Each batch is one pipeline of XADDs; the listener's position moves once Redis has answered it
(pgnotify.handlers.forwarding.base). An entry may be written twice (a retry after a reply that was
lost, or a replay after a crash): consumers de-duplicate by `id`. Notifications that are not
change events are skipped unless `raw=True`: then `id` is "n-<32 hex digits>" and `payload` the
shape documented in base.py.
"""

from dataclasses import dataclass

from django.conf import settings

from ...extras import require
from .base import Forwarder, Message, Options, flag_problems, redact, url_problem

require("redis", "redis", "RedisStreamForwarder")

import redis.asyncio as redis  # noqa: E402
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, kw_only=True)
class RedisStreamOptions(Options):
    url: str | None = None  # None: settings.REDIS_URL, else DEFAULT_URL
    prefix: str = "pgnotify:"
    maxlen: int | None = 100_000  # per stream; None keeps everything
    approximate: bool = True  # MAXLEN ~: trimming whole macro nodes is much cheaper
    timeout: float = 5.0

    def problems(self) -> list[str]:
        problems = []
        if self.url is not None and (problem := url_problem(self.url, ("redis", "rediss", "unix"), "url")):
            problems.append(problem)
        if not isinstance(self.prefix, str):
            problems.append(f"prefix must be a string, not {self.prefix!r}")
        maxlen = self.maxlen
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1):
            problems.append(f"maxlen must be a whole number of at least 1, or None, not {maxlen!r}")
        return problems + flag_problems(self, "approximate") + super().problems()


class RedisStreamForwarder(Forwarder):
    """Listener handler: XADD every change event to the stream of its channel."""

    Options = RedisStreamOptions

    def __init__(self, **options):
        super().__init__(**{**options, "url": options.get("url") or getattr(settings, "REDIS_URL", "") or DEFAULT_URL})
        # No retries inside the client: the queue retries with backoff and the position holds.
        self._client = redis.Redis.from_url(self.options.url, socket_timeout=self.send_timeout,
                                            socket_connect_timeout=self.send_timeout, retry=Retry(NoBackoff(), 0))

    @property
    def destination(self) -> str:
        return f"{redact(self.options.url)} {self.options.prefix}*"

    @property
    def written(self) -> int:
        """Entries Redis has taken (the name earlier versions used)."""
        return self.forwarded

    def stream(self, channel: str) -> str:
        return self.options.prefix + channel

    async def send(self, batch: list[Message]) -> None:
        pipe = self._client.pipeline(transaction=False)
        maxlen, approximate = self.options.maxlen, self.options.approximate
        for message in batch:
            fields = {"id": str(message.id), "channel": message.channel, "payload": message.body}
            pipe.xadd(self.stream(message.channel), fields, maxlen=maxlen, approximate=approximate)
        await pipe.execute()  # raises on any failure: the batch stays first in line

    async def disconnect(self) -> None:
        await self._client.connection_pool.disconnect()

    async def close(self) -> None:
        await super().close()
        await self._client.aclose()
