"""Forwarding to an HTTP endpoint: each change event (or a batch of them) POSTed as signed JSON.

    PGNOTIFY = {
        "HANDLERS": [
            {"handler": "pgnotify.forwarding.Webhook",
             "channels": ["orders"],
             "options": {"url": "https://billing.example.com/hooks/orders",
                         "secret": os.environ["ORDERS_WEBHOOK_SECRET"]}},
        ],
    }

The body is the change event as JSON (with `batch` above 1: a JSON array of up to that many
events). Headers: `X-Pgnotify-Event-Id` (the event's id; a batch lists its ids, comma-separated),
`X-Pgnotify-Channel`, and `X-Pgnotify-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body
with the secret (docs/forwarding/webhooks.md shows a receiver that checks it).

A 2xx answer confirms the request. 5xx, 408, 429, a timeout (`timeout` seconds per request) or a
connection error is retried with capped exponential backoff, and the listener's position holds
meanwhile. Any other answer (4xx, 3xx) is a refusal: not retried, but a dead letter, counted in
`dead_letters`, logged (a warning, at most one line per minute with the count), and appended to
`dead_letter_file` as one JSON line with the event when that option names a file. Events of one
channel go one request at a time, in order; up to `concurrency` channels are sent at once.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ... import __version__
from ...exceptions import HandlersBehindError
from ...extras import require
from ...listener.throttle import ThrottledLog
from .base import Forwarder, Message, Options, redact, url_problem

require("aiohttp", "webhooks", "the Webhook forwarder")

import aiohttp  # noqa: E402

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pgnotify-Signature"
EVENT_ID_HEADER = "X-Pgnotify-Event-Id"
CHANNEL_HEADER = "X-Pgnotify-Channel"
RETRIED_STATUSES = {408, 429}  # and every 5xx: the receiver may take the same request later
MIN_SECRET_LENGTH = 16
REFUSED_LOG_INTERVAL = 60.0


def signature(secret: str, body: bytes) -> str:
    """The value of X-Pgnotify-Signature for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, kw_only=True)
class WebhookOptions(Options):
    url: str
    secret: str = field(repr=False)  # kept out of any repr
    batch: int = 1
    concurrency: int = 4
    headers: dict = field(default_factory=dict)
    dead_letter_file: str | None = None

    def problems(self) -> list[str]:
        problems = []
        if problem := url_problem(self.url, ("http", "https"), "url"):
            problems.append(problem)
        if not isinstance(self.secret, str) or len(self.secret) < MIN_SECRET_LENGTH:
            problems.append(f"secret must be a string of at least {MIN_SECRET_LENGTH} characters "
                            "(the receiver checks each request's signature with it)")
        concurrency, headers, dead_letter_file = self.concurrency, self.headers, self.dead_letter_file
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 100:
            problems.append(f"concurrency must be a whole number from 1 to 100, not {concurrency!r}")
        if headers is not None:
            if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in headers.items()):
                problems.append("headers must be a dict of header name -> text")
            elif reserved := [k for k in headers if k.lower() in {"content-type", SIGNATURE_HEADER.lower(),
                                                                   EVENT_ID_HEADER.lower(), CHANNEL_HEADER.lower()}]:
                problems.append(f"headers may not set {', '.join(reserved)}: the forwarder sets it")
        if dead_letter_file is not None:
            if not isinstance(dead_letter_file, str) or not dead_letter_file:
                problems.append(f"dead_letter_file must be a file path, not {dead_letter_file!r}")
            elif not os.path.isdir(os.path.dirname(os.path.abspath(dead_letter_file))):
                problems.append(f"dead_letter_file {dead_letter_file!r} is in a directory that does not exist")
        return problems + super().problems()


class Webhook(Forwarder):
    """Listener handler: POST change events to `url`, signed with `secret`."""

    Options = WebhookOptions
    options: WebhookOptions

    def __init__(self, **options):
        super().__init__(**options)
        url = self.options.url
        self._secret = self.options.secret
        self.headers = dict(self.options.headers or {})
        self.dead_letters = 0  # events the receiver refused (4xx, 3xx): not retried
        self._refused = ThrottledLog(logger, f"webhook {redact(url).replace('%', '%%')} refused %d events",
                                     REFUSED_LOG_INTERVAL)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def destination(self) -> str:
        return redact(self.options.url)

    def queue_key(self, message: Message) -> str:
        return message.channel  # one request at a time per channel keeps each channel in order

    def body(self, batch: list[Message]) -> bytes:
        if self.batch == 1:
            return batch[0].body
        return b"[" + b",".join(message.body for message in batch) + b"]"

    async def send(self, batch: list[Message]) -> None:
        body = self.body(batch)
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            "User-Agent": f"pgnotify/{__version__}",
            EVENT_ID_HEADER: ", ".join(str(message.id) for message in batch),
            CHANNEL_HEADER: batch[0].channel,
            SIGNATURE_HEADER: signature(self._secret, body),
        }
        session, slots = self._open(), self._slots
        assert slots is not None  # made with the session
        try:
            async with slots, session.post(self.options.url, data=body, headers=headers,
                                           allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return
                excerpt = " ".join((await response.content.read(200)).decode(errors="replace").split())
        except TimeoutError:
            raise HandlersBehindError(f"no answer from {self.destination} within {self.send_timeout} s") from None
        if response.status >= 500 or response.status in RETRIED_STATUSES:
            raise HandlersBehindError(f"HTTP {response.status} from {self.destination}: {excerpt or '(no body)'}")
        await self._dead_letter(batch, response.status, excerpt)

    async def _dead_letter(self, batch: list[Message], status: int, excerpt: str) -> None:
        if self.options.dead_letter_file is not None:
            refused_at = datetime.now(UTC).isoformat()
            lines = [json.dumps({"id": m.id, "channel": m.channel, "status": status, "response": excerpt,
                                 "refused_at": refused_at, "event": json.loads(m.body)}) for m in batch]
            # A dead letter that cannot be kept is a failure: the batch is tried again.
            await asyncio.to_thread(_append, self.options.dead_letter_file, lines)
        self.dead_letters += len(batch)
        ids = ", ".join(str(m.id) for m in batch)
        self._refused.add(len(batch), detail=f"HTTP {status} for event {ids}: {excerpt or '(no body)'}")

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._slots = asyncio.Semaphore(self.options.concurrency)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.options.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.send_timeout))
        return self._session

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write("".join(line + "\n" for line in lines))
