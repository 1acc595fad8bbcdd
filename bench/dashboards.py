"""Dashboard websocket clients: many connections with one staff session, each parsing every frame
it receives and counting the change events in it (de-duplicated by id), noting when the frame's
bytes arrived; latency is counted from the row's commit (the writer's report) and from the event's
`ts` (when the trigger ran, before the commit). The database, the writer and the clients share this
machine's clock.

The clients share the machine with the server under test, so each is a small asyncio protocol
(RFC 6455 client side: handshake checked, frames of any size and fragmentation, pings answered)
rather than a general-purpose library: what they cost is what they must do, read and parse.
"""

import asyncio
import base64
import hashlib
import os
import time
import urllib.parse
from datetime import datetime

import orjson

PARSED_FRAMES = 1024  # frames whose parse a Tally keeps for the other clients
CONNECTS_AT_ONCE = 25  # handshakes in flight: daphne checks each session in the database
OPEN_TIMEOUT = 60.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


class Tally:
    """What all clients of one measurement saw of the rows of `table` with a pk above `after_pk`."""

    def __init__(self, table: str):
        self.table = table
        self.after_pk: int | None = None  # None while warming up: nothing is counted yet
        self.latencies: list[float] = []  # from the event's ts
        self.arrivals: list[tuple[int, float]] = []  # (pk, time received), for latency from the commit
        self._epochs: dict[str, float] = {}
        self._parsed: dict[bytes, dict] = {}

    def parse(self, data: bytes) -> dict:
        # The dashboards of one daphne process receive the same bytes: each frame is parsed once
        # here, not once per client (the clients share the machine with the stack they measure).
        frame = self._parsed.get(data)
        if frame is None:
            if len(self._parsed) >= PARSED_FRAMES:
                self._parsed.clear()
            frame = self._parsed[data] = orjson.loads(data)
        return frame

    def epoch(self, ts: str) -> float:
        # Every client receives the same events: each timestamp is parsed once.
        value = self._epochs.get(ts)
        if value is None:
            value = self._epochs[ts] = datetime.fromisoformat(ts).timestamp()
        return value


class Dashboard:
    def __init__(self, tally: Tally):
        self.tally = tally
        # Rows seen, by pk - after_pk: a growing set would be rehashed in all clients at the same
        # event (at 4,915), a pause of up to 160 ms measured as the stack's latency.
        self.seen = bytearray()
        self.received = 0
        self.warm = asyncio.Event()  # a first `changes` frame arrived

    def on_frame(self, data: bytes, received: float) -> None:
        frame = self.tally.parse(data)  # shared: read, never changed
        if frame.get("type") != "changes":
            return
        if not self.warm.is_set():
            self.warm.set()
        tally = self.tally
        after_pk = tally.after_pk
        if after_pk is None:
            return
        table, seen, latencies, arrivals = tally.table, self.seen, tally.latencies, tally.arrivals
        for event in frame["events"]:
            if event.get("table") != table or event.get("op") != "INSERT" or event["pk"] <= after_pk:
                continue
            index = event["pk"] - after_pk
            if index >= len(seen):
                seen.extend(bytes(index + 1 - len(seen) + 4096))
            if not seen[index]:
                seen[index] = 1
                self.received += 1
                latencies.append(received - tally.epoch(event["ts"]))
                arrivals.append((event["pk"], received))


def mask(payload: bytes) -> bytes:
    """A client frame's masking key and masked payload."""
    key = os.urandom(4)
    return key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def upgrade_request(url: str, origin: str, cookie: str) -> tuple[bytes, bytes]:
    """The websocket upgrade request for `url` (ws://host:port/path) and its key."""
    parts = urllib.parse.urlsplit(url)
    key = base64.b64encode(os.urandom(16))
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: {origin}\r\nCookie: {cookie}\r\n\r\n").encode()
    return request, key


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    # Control frames only (pong, close): payloads under 126 bytes.
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask(payload)


class WebsocketClient(asyncio.Protocol):
    """One dashboard connection: the upgrade request, then every text message to on_message
    with the time its last bytes were read."""

    def __init__(self, request: bytes, key: bytes, on_message):
        self.request, self.on_message = request, on_message
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed before the upgrade"))

    def data_received(self, data: bytes) -> None:
        received = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded and not self._upgrade():
            return
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length, header = second & 0x7F, 2
            if length == 126:
                if size - position < 4:
                    break
                length, header = int.from_bytes(buffer[position + 2:position + 4], "big"), 4
            elif length == 127:
                if size - position < 10:
                    break
                length, header = int.from_bytes(buffer[position + 2:position + 10], "big"), 10
            if second & 0x80:
                self._fail("masked frame from the server")
                return
            end = position + header + length
            if end > size:
                break
            payload = bytes(buffer[position + header:end])
            position = end
            self._frame(first & 0x0F, bool(first & 0x80), payload, received)
        if position:
            del buffer[:position]

    def _upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[:end + 4]
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}
        if head[0].split(" ")[1:2] != ["101"] or headers.get("sec-websocket-accept", "").encode() != self.accept:
            self._fail(f"upgrade refused: {head[0]}")
            return False
        self.upgraded = True
        self.opened.set_result(None)
        return True

    def _frame(self, opcode: int, final: bool, payload: bytes, received: float) -> None:
        if opcode == TEXT or opcode == BINARY or opcode == CONTINUATION:
            if final and not self.fragments:
                self.on_message(payload, received)
            elif final:
                self.fragments.append(payload)
                self.on_message(b"".join(self.fragments), received)
                self.fragments = []
            else:
                self.fragments.append(payload)
        elif opcode == PING:
            self.transport.write(client_frame(PONG, payload))
        elif opcode == CLOSE:
            self.close()

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()


class DashboardPool:
    """`count` dashboards connected to `url`; `async with` connects them all and closes them."""

    def __init__(self, url: str, cookie: str, origin: str, count: int, tally: Tally,
                 client_class: type[WebsocketClient] = WebsocketClient):
        self.url, self.cookie, self.origin, self.client_class = url, cookie, origin, client_class
        self.dashboards = [Dashboard(tally) for _ in range(count)]
        self.clients: list[WebsocketClient] = []
        self._gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def __aenter__(self) -> "DashboardPool":
        try:
            await asyncio.wait_for(asyncio.gather(*(self._connect(d) for d in self.dashboards)), 120)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        for client in self.clients:
            client.close()

    async def _connect(self, dashboard: Dashboard) -> None:
        url = urllib.parse.urlsplit(self.url)
        request, key = upgrade_request(self.url, self.origin, self.cookie)
        async with self._gate:
            _, client = await asyncio.get_running_loop().create_connection(
                lambda: self.client_class(request, key, dashboard.on_frame), url.hostname, url.port or 80)
            self.clients.append(client)
            await asyncio.wait_for(client.opened, OPEN_TIMEOUT)

    async def wait_warm(self, seconds: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(d.warm.wait() for d in self.dashboards)), seconds)

    async def wait_received(self, expected: int, seconds: float) -> None:
        """Until every dashboard has `expected` events, or `seconds` (what is missing then is lost)."""
        deadline = time.monotonic() + seconds
        # Polled, bounded: an event per client per frame would cost more than the clients' own work.
        while time.monotonic() < deadline and any(d.received < expected for d in self.dashboards):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def delivered(self) -> int:
        return sum(d.received for d in self.dashboards)
