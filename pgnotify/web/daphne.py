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

import functools
import logging

logger = logging.getLogger(__name__)
VERIFIED_WITH = "daphne 4.2.3, autobahn 26.10.2, Twisted 26.10.0"
TRANSPORT_INTERNALS = ("dataBuffer", "_tempDataLen", "disconnecting", "getHandle")
PROTOCOL_INTERNALS = ("send_queue",)
_reported = False


class Connection:
    """A dashboard's daphne websocket, written to with frames prepared once for all.

    A frame goes straight to the socket when nothing is waiting in the transport's buffer (the
    common case: frames are small and clients read them): one send() instead of Twisted's
    buffer, writer registration with the event loop, a later write callback and unregistration.
    Whatever the socket does not take at once, and every frame while anything is buffered, goes
    through the transport as usual, so the bytes stay in order. Compressed or TLS connections,
    and Twisted versions whose transport looks different, use autobahn's sendPreparedMessage."""

    __slots__ = ("protocol", "socket", "transport")
    direct_writes = 0  # frames written straight to a socket, by every connection (tests, metrics)

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = transport = protocol.transport
        self.socket = None
        compressed = getattr(protocol, "_perMessageCompress", True) is not None
        tls = getattr(transport, "TLS", True) is not False
        missing = [name for name in TRANSPORT_INTERNALS if not hasattr(transport, name)]
        missing += [name for name in PROTOCOL_INTERNALS if not hasattr(protocol, name)]
        if not (compressed or tls or missing):
            self.socket = transport.getHandle()
        _report(missing, compressed, tls)

    @property
    def direct(self) -> bool:
        """Whether frames may go straight to the socket (else always through autobahn)."""
        return self.socket is not None

    def open(self) -> bool:
        return self.protocol.state == self.protocol.STATE_OPEN

    def write(self, prepared) -> None:
        transport, sock = self.transport, self.socket
        if (sock is None or transport.dataBuffer or transport._tempDataLen or transport.disconnecting
                or self.protocol.send_queue):
            self.protocol.sendPreparedMessage(prepared)
            return
        data = prepared.payloadHybi
        try:
            sent = sock.send(data)
        except OSError:  # would block, or the connection broke: the transport finds out and closes
            sent = 0
        Connection.direct_writes += 1
        if sent < len(data):
            transport.write(data[sent:])


def _report(missing: list[str], compressed: bool, tls: bool) -> None:
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
        logger.info("dashboard and live frames are written straight to each socket (daphne fast path)")


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
