"""Forwarding to NATS JetStream (nats-py): change events published to a stream.

    PGNOTIFY = {
        "HANDLERS": [
            {"handler": "pgnotify.forwarding.JetStream",
             "channels": ["orders", "products"],
             "options": {"url": "nats://127.0.0.1:4222", "prefix": "pgnotify",
                         "stream": "PGNOTIFY", "create_stream": True}},
        ],
    }

Subject `<prefix>.<channel>.<table>.<op>` (e.g. `pgnotify.orders.shop_order.UPDATE`), header
`Nats-Msg-Id` = the event's id, so the stream drops a repeat published within its duplicate
window (2 minutes unless the stream says otherwise). Each batch is published at once and counts as
delivered once the stream has acknowledged every message in it (stored; acknowledgements that
say "duplicate" are counted in `duplicates`). With `create_stream=True` the stream `stream` is
created for `<prefix>.>` if it does not exist; otherwise a stream must already capture the
subjects, or nothing is acknowledged and the listener's position holds.
"""

import asyncio
import contextlib
import re
from dataclasses import dataclass

from ...exceptions import one_line
from ...extras import require
from .base import Forwarder, Message, Options, flag_problems, redact, token, url_problem

require("nats", "nats", "the JetStream forwarder")

import nats  # noqa: E402
from nats.js.api import StorageType  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402

DEFAULT_URL = "nats://127.0.0.1:4222"
_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, kw_only=True)
class JetStreamOptions(Options):
    url: str = DEFAULT_URL
    prefix: str = "pgnotify"
    stream: str = "PGNOTIFY"
    create_stream: bool = False
    duplicate_window: float = 120.0  # seconds, for a stream this forwarder creates

    def problems(self) -> list[str]:
        problems = []
        if problem := url_problem(self.url, ("nats", "tls"), "url"):
            problems.append(problem)
        if not isinstance(self.prefix, str) or not _SUBJECT_PREFIX.fullmatch(self.prefix):
            problems.append(f"prefix must be subject words of letters, digits, '_', '-' or ':' joined by '.' "
                            f"(no wildcards, no spaces), not {self.prefix!r}")
        if not isinstance(self.stream, str) or not _STREAM_NAME.fullmatch(self.stream):
            problems.append(f"stream must be a name of letters, digits, '_' or '-', not {self.stream!r}")
        window = self.duplicate_window
        if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
            problems.append(f"duplicate_window must be a number of seconds above 0, not {window!r}")
        return problems + flag_problems(self, "create_stream") + super().problems()


class JetStream(Forwarder):
    """Listener handler: publish change events to JetStream, each acknowledged before the position moves."""

    Options = JetStreamOptions

    def __init__(self, **options):
        super().__init__(**options)
        self.duplicates = 0  # acknowledgements that said the stream already had the message
        self._client = None
        self._js = None

    @property
    def destination(self) -> str:
        return f"{self.options.prefix}.> at {redact(self.options.url)}"

    def subject(self, message: Message) -> str:
        return f"{self.options.prefix}.{token(message.channel)}.{token(message.table)}.{token(message.op)}"

    async def send(self, batch: list[Message]) -> None:
        js = await self._open()
        # Written in order on one connection; the acknowledgements come back as they are stored.
        futures = [await js.publish_async(self.subject(message), message.body,
                                          headers={"Nats-Msg-Id": str(message.id)}) for message in batch]
        async with asyncio.timeout(self.send_timeout):
            acks = await asyncio.gather(*futures)
        self.duplicates += sum(1 for ack in acks if ack.duplicate)

    async def _open(self):
        if self._js is None:
            async with asyncio.timeout(self.send_timeout):
                self._client = await self._connect()
                js = self._client.jetstream(timeout=self.send_timeout)
                if self.options.create_stream:
                    await self._ensure_stream(js)
                self._js = js
        return self._js

    async def _connect(self):
        """A client, or the first error of the attempt: the client itself would try a refused
        connection again until the timeout, and report that instead of the refusal."""
        first_error = asyncio.get_running_loop().create_future()

        async def on_error(error: Exception) -> None:
            if not first_error.done():
                first_error.set_result(error)

        # No reconnecting inside the client: a failed batch closes the connection and the queue
        # retries on a new one, with backoff.
        connecting = asyncio.ensure_future(nats.connect(
            servers=[self.options.url], connect_timeout=self.send_timeout, allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=on_error, disconnected_cb=_ignore_event, closed_cb=_ignore_event))
        try:
            await asyncio.wait({connecting, first_error}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
        if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
            if not first_error.done():
                first_error.set_result(None)  # later errors: the queue logs failures itself
            return connecting.result()
        error = first_error.result() if first_error.done() else connecting.exception()
        reason = "connection refused" if isinstance(error, ConnectionRefusedError) else one_line(error)
        raise ConnectionError(f"cannot connect to {redact(self.options.url)}: {reason}") from error

    async def _ensure_stream(self, js) -> None:
        try:
            await js.stream_info(self.options.stream)
        except NotFoundError:
            options = self.options
            await js.add_stream(name=options.stream, subjects=[f"{options.prefix}.>"], storage=StorageType.FILE,
                                duplicate_window=options.duplicate_window)

    async def disconnect(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), CLOSE_TIMEOUT)


async def _ignore_event() -> None:
    pass
