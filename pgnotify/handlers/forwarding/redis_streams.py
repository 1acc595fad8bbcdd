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

from django.conf import settings

from ...extras import require
from .base import Forwarder, Message, common_problems, redact, refuse, url_problem

require("redis", "redis", "RedisStreamForwarder")

import redis.asyncio as redis  # noqa: E402
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class RedisStreamForwarder(Forwarder):
    """Listener handler: XADD every change event to the stream of its channel."""

    def __init__(self, url: str | None = None, prefix: str = "pgnotify:", maxlen: int | None = 100_000,
                 approximate: bool = True, max_buffer: int = 10_000, timeout: float = 5.0, batch: int = 1000,
                 raw: bool = False):
        url = url or getattr(settings, "REDIS_URL", "") or DEFAULT_URL
        refuse(self.check_options(url=url, prefix=prefix, maxlen=maxlen, approximate=approximate,
                                  max_buffer=max_buffer, timeout=timeout, batch=batch, raw=raw))
        super().__init__(raw=raw, batch=batch, timeout=timeout, max_buffer=max_buffer)
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen  # per stream; None keeps everything
        self.approximate = approximate  # MAXLEN ~: trimming whole macro nodes is much cheaper
        # No retries inside the client: the lane retries with backoff and the position holds.
        self._client = redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry=Retry(NoBackoff(), 0))

    @classmethod
    def check_options(cls, url=None, prefix="pgnotify:", maxlen=100_000, approximate=True, max_buffer=10_000,
                      timeout=5.0, batch=1000, raw=False) -> list[str]:
        problems = []
        if url is not None and (problem := url_problem(url, ("redis", "rediss", "unix"), "url")):
            problems.append(problem)
        if not isinstance(prefix, str):
            problems.append(f"prefix must be a string, not {prefix!r}")
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1):
            problems.append(f"maxlen must be a whole number of at least 1, or None, not {maxlen!r}")
        if not isinstance(approximate, bool):
            problems.append(f"approximate must be True or False, not {approximate!r}")
        return problems + common_problems(batch, timeout, max_buffer, raw)

    @property
    def destination(self) -> str:
        return f"{redact(self.url)} {self.prefix}*"

    @property
    def written(self) -> int:
        """Entries Redis has taken (the name earlier versions used)."""
        return self.forwarded

    def stream(self, channel: str) -> str:
        return self.prefix + channel

    async def send(self, batch: list[Message]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for message in batch:
            fields = {"id": str(message.id), "channel": message.channel, "payload": message.body}
            pipe.xadd(self.stream(message.channel), fields, maxlen=self.maxlen, approximate=self.approximate)
        await pipe.execute()  # raises on any failure: the batch stays first in line

    async def disconnect(self) -> None:
        await self._client.connection_pool.disconnect()

    async def close(self) -> None:
        await super().close()
        await self._client.aclose()
