"""daphne, autobahn and Twisted internals: a dashboard frame framed once and written straight to
each dashboard's socket, and a live stream's frame written straight to its socket.

Verified against daphne 4.2.3, autobahn 26.10.2 and Twisted 26.10.0 (the upper bounds of the `daphne`
extra in pyproject.toml keep untested versions out). What is reached into: daphne's
`Server.handle_reply` partial (to find a consumer's protocol), autobahn's `prepareMessage`,
`sendPreparedMessage`, `_perMessageCompress`, `send_queue` and `state`, and Twisted's transport
`dataBuffer`, `_tempDataLen`, `disconnecting`, `TLS` and `getHandle()`. When any is missing,
`daphne_websocket` returns None or `Connection.direct` is False and frames go the usual way
(correct, slower); tests fail loudly when that happens under the pinned versions.
"""

import asyncio
import functools
import logging
import os
import random
import struct
import time

logger = logging.getLogger(__name__)
VERIFIED_WITH = "daphne 4.2.3, autobahn 26.10.2, Twisted 26.10.0"
TRANSPORT_INTERNALS = ("dataBuffer", "_tempDataLen", "disconnecting", "getHandle")
PROTOCOL_INTERNALS = ("send_queue",)
# autobahn's automatic ping, as Connection.ping takes it over
PING_INTERNALS = ("autoPingPendingSeq", "autoPingSize", "autoPingTimeout", "onAutoPingTimeout", "_sendAutoPing")
PING_HEAD = struct.Struct(">QL")  # autobahn's ping payload: when it was sent (ns), its number
# daphne's per-socket timeout check, as Connection.check_timeouts skips it until due
CHECK_INTERNALS = ("check_timeouts", "last_ping", "socket_opened", "server")
CHECK_PERIOD = 2.0  # seconds between daphne's timeout checks (Server.timeout_checker)
_reported = False


class Connection:
    """A dashboard's daphne websocket, written to with frames prepared once for all.

    A frame goes straight to the socket when nothing is waiting in the transport's buffer (the
    common case: frames are small and clients read them): one send() instead of Twisted's
    buffer, writer registration with the event loop, a later write callback and unregistration.
    Whatever the socket does not take at once, and every frame while anything is buffered, goes
    through the transport as usual, so the bytes stay in order. Compressed or TLS connections,
    and Twisted versions whose transport looks different, use autobahn's sendPreparedMessage."""

    __slots__ = ("due", "protocol", "socket", "transport")
    direct_writes = 0  # frames written straight to a socket, by every connection (tests, metrics)

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = transport = protocol.transport
        self.socket = None
        self.due = 0.0
        compressed = getattr(protocol, "_perMessageCompress", True) is not None
        tls = getattr(transport, "TLS", True) is not False
        missing = [name for name in TRANSPORT_INTERNALS if not hasattr(transport, name)]
        missing += [name for name in PROTOCOL_INTERNALS if not hasattr(protocol, name)]
        pings = all(hasattr(protocol, name) for name in PING_INTERNALS) and hasattr(protocol.factory, "_batched_timer")
        if not (compressed or tls or missing):
            self.socket = transport.getHandle()
            if pings:
                protocol._sendAutoPing = self.ping  # daphne's timeout check pings through it
                if all(hasattr(protocol, name) for name in CHECK_INTERNALS):
                    protocol.check_timeouts = self.check_timeouts
        _report(missing, compressed, tls, pings)

    @property
    def direct(self) -> bool:
        """Whether frames may go straight to the socket (else always through autobahn)."""
        return self.socket is not None

    def open(self) -> bool:
        return self.protocol.state == self.protocol.STATE_OPEN

    def _waiting(self) -> bool:
        """Whether bytes wait in the transport or in autobahn's queue (so new ones go after them)."""
        transport = self.transport
        return bool(transport.dataBuffer or transport._tempDataLen or transport.disconnecting
                    or self.protocol.send_queue)

    def write(self, prepared) -> None:
        if self.socket is None or self._waiting():
            self.protocol.sendPreparedMessage(prepared)
            return
        self._send(prepared.payloadHybi)

    def ping(self) -> None:
        """autobahn's automatic ping, written straight to the socket: the same payload, which the
        peer's pong must echo, and the same timeout, after which a silent peer is dropped
        (autobahn's own way, framing, log arguments formatted and a writer registered, took
        about 60 µs a ping)."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return
        if self._waiting():
            type(protocol)._sendAutoPing(protocol)
            return
        protocol.autoPingPendingCall = None
        protocol.autoPingPendingSent = sent = time.time_ns()
        protocol.autoPingPendingSeq += 1
        payload = PING_HEAD.pack(sent, protocol.autoPingPendingSeq) + os.urandom(protocol.autoPingSize - 12)
        protocol.autoPingPending = payload
        self._send(b"\x89" + bytes((len(payload),)) + payload)  # FIN, ping; unmasked, at most 125 bytes
        if protocol.autoPingTimeout:
            protocol.autoPingTimeoutCall = protocol.factory._batched_timer.call_later(
                protocol.autoPingTimeout, protocol.onAutoPingTimeout)

    def check_timeouts(self) -> None:
        """daphne's timeout check of this socket. daphne runs it for every socket every 2 s in one
        go, pinging those whose ping is due right there: at 5,000 sockets, 20 to 40 ms every 2 s
        on the test machine, most of it the pings' send() calls. Here a socket is only compared
        with its next due time, and a due ping is sent at a random moment of the next 2 s."""
        now = time.time()
        if now < self.due:
            return
        protocol = self.protocol
        server = protocol.server
        if protocol.state == protocol.STATE_OPEN and now - protocol.last_ping > server.ping_interval:
            protocol.last_ping = now  # daphne's check below leaves the ping to us
            asyncio.get_running_loop().call_later(random.uniform(0, CHECK_PERIOD), self.ping)
        type(protocol).check_timeouts(protocol)  # closes or rejects, as daphne does
        if protocol.state != protocol.STATE_OPEN:
            self.due = 0.0  # connecting or closing: checked every time, as daphne does
            return
        limit = protocol.socket_opened + server.websocket_timeout if server.websocket_timeout >= 0 else float("inf")
        self.due = min(protocol.last_ping + server.ping_interval, limit)

    def _send(self, data: bytes) -> None:
        transport, sock = self.transport, self.socket
        if sock is None:
            transport.write(data)
            return
        try:
            sent = sock.send(data)
        except OSError:  # would block, or the connection broke: the transport finds out and closes
            sent = 0
        Connection.direct_writes += 1
        if sent < len(data):
            transport.write(data[sent:])


def _report(missing: list[str], compressed: bool, tls: bool, pings: bool) -> None:
    """Say once per process which way dashboard and live frames go, so that an upgrade that turns the fast
    path off is seen (tests require the first line under the versions pinned)."""
    global _reported
    if _reported:
        return
    _reported = True
    if missing:
        logger.warning("websocket fast path off: this daphne/autobahn/Twisted lacks %s (verified with %s); "
                       "frames go through autobahn", ", ".join(missing), VERIFIED_WITH)
    elif compressed or tls:
        logger.info("dashboard and live frames go through autobahn (%s connection)",
                    "compressed" if compressed else "TLS")
    else:
        logger.info("dashboard and live frames%s are written straight to each socket (daphne fast path)",
                    ", and pings," if pings else "")


def daphne_websocket(consumer):
    """The daphne websocket protocol (an autobahn WebSocketServerProtocol) a consumer's `send`
    ends in, or None (another server, a test communicator, unknown middleware). Follows
    channels' session wrapper (`real_send`) down to daphne's `partial(Server.handle_reply,
    protocol)`."""
    send = getattr(consumer, "base_send", None)
    for _ in range(10):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if len(send.args) == 1 else None
            if (getattr(send.func, "__name__", None) == "handle_reply"
                    and type(getattr(send.func, "__self__", None)).__module__.startswith("daphne.")
                    and hasattr(protocol, "sendPreparedMessage") and hasattr(protocol, "factory")):
                return protocol
            return None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None
