"""Forwarding to RabbitMQ (AMQP 0-9-1, through aio-pika): change events published to an exchange.

    PGNOTIFY = {
        "HANDLERS": [
            {"handler": "pgnotify.forwarding.RabbitMQ",
             "channels": ["orders", "products"],
             "options": {"url": "amqp://guest:guest@127.0.0.1:5672/", "exchange": "pgnotify",
                         "declare": True}},
        ],
    }

Routing key `<channel>.<table>.<op>` (e.g. `orders.shop_order.UPDATE`; for a topic exchange bind
`orders.#` or `*.*.DELETE`). Messages are persistent, JSON, with `message_id` = the event's id.
Each batch is published on a channel in publisher-confirm mode and counts as delivered once the
broker has confirmed every message in it (a persistent message routed to a durable queue is
confirmed once written to disk). A message the exchange routes to no queue is dropped by the
broker and still confirmed, unless `mandatory=True`, which holds the listener until a queue is
bound (docs/forwarding/rabbitmq.md).
"""

import asyncio
import contextlib
import re
from dataclasses import dataclass

from ...exceptions import HandlersBehindError
from ...extras import require
from .base import Forwarder, Message, Options, flag_problems, redact, token, url_problem

require("aio_pika", "rabbitmq", "the RabbitMQ forwarder")

import aio_pika  # noqa: E402
import aiormq.abc  # noqa: E402 - aio-pika's own AMQP layer

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")
_EXCHANGE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}")  # AMQP 0-9-1's exchange name characters
CLOSE_TIMEOUT = 2.0  # seconds a closing connection may take before it is abandoned


@dataclass(frozen=True, kw_only=True)
class RabbitMQOptions(Options):
    url: str = DEFAULT_URL
    exchange: str = "pgnotify"
    exchange_type: str = "topic"
    declare: bool = False  # declare the exchange (durable), else it must exist
    mandatory: bool = False

    def problems(self) -> list[str]:
        problems = []
        if problem := url_problem(self.url, ("amqp", "amqps"), "url"):
            problems.append(problem)
        exchange = self.exchange
        if not isinstance(exchange, str) or not _EXCHANGE_NAME.fullmatch(exchange):
            problems.append(f"exchange must be a name of 1 to 255 letters, digits, '_', '-', '.' or ':', "
                            f"not {exchange!r}")
        elif self.declare is True and exchange.startswith("amq."):
            problems.append(f"exchange {exchange!r} is one of the broker's own: use it with declare=False")
        if self.exchange_type not in EXCHANGE_TYPES:
            problems.append(f"exchange_type must be one of {', '.join(EXCHANGE_TYPES)}, not {self.exchange_type!r}")
        return problems + flag_problems(self, "declare", "mandatory") + super().problems()


class RabbitMQ(Forwarder):
    """Listener handler: publish change events to a RabbitMQ exchange, with publisher confirms."""

    Options = RabbitMQOptions

    def __init__(self, **options):
        super().__init__(**options)
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel = None

    @property
    def destination(self) -> str:
        return f"exchange {self.options.exchange!r} at {redact(self.options.url)}"

    @staticmethod
    def routing_key(message: Message) -> str:
        return f"{token(message.channel)}.{token(message.table)}.{token(message.op)}"

    async def send(self, batch: list[Message]) -> None:
        channel = await self._open()
        # One task per message: the channel writes them in order (its lock) and each awaits its own
        # confirm, so the whole batch is in flight at once. aio-pika's Exchange.publish would also
        # wait for each frame to be written before the next (wait=True): 1.6 times slower.
        async with asyncio.timeout(self.send_timeout):
            results = await asyncio.gather(*(self._publish(channel, message) for message in batch),
                                           return_exceptions=True)
        for message, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            if isinstance(result, aiormq.abc.DeliveredMessage):  # returned: routed to no queue
                raise HandlersBehindError(f"{self.destination} routes {self.routing_key(message)!r} to no queue "
                                          "(mandatory=True holds the events until a queue is bound)")

    def _publish(self, channel, message: Message):
        properties = aio_pika.Message(
            message.body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(message.id), app_id="pgnotify", headers={"pgnotify-channel": message.channel}).properties
        return channel.basic_publish(message.body, exchange=self.options.exchange,
                                     routing_key=self.routing_key(message), properties=properties,
                                     mandatory=self.options.mandatory, wait=False)

    async def _open(self):
        """The publisher-confirm channel (aiormq's, under aio-pika's), once the exchange is there."""
        if self._channel is None:
            async with asyncio.timeout(self.send_timeout):
                self._connection = await aio_pika.connect(self.options.url, timeout=self.send_timeout)
                channel = await self._connection.channel(publisher_confirms=True)
                if self.options.declare:
                    await channel.declare_exchange(self.options.exchange, self.options.exchange_type, durable=True)
                else:
                    await channel.get_exchange(self.options.exchange, ensure=True)  # fails at once if it is missing
                self._channel = await channel.get_underlay_channel()
        return self._channel

    async def disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        # A broker that went silent never answers the close: give up on it after a moment.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
