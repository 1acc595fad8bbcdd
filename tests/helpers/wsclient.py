"""A small asyncio websocket client (RFC 6455) for tests against a real daphne: text frames, close
codes, and an abrupt end of the TCP connection (no close frame), which library clients hide."""

import asyncio
import base64
import json
import os
import struct


class Refused(Exception):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status: int):
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


class Closed(Exception):
    """The server closed the websocket (code None: the TCP connection ended without a close frame)."""

    def __init__(self, code: int | None):
        super().__init__(f"websocket closed with code {code}")
        self.code = code


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.close_code: int | None = None
        self.pings: list[bytes] = []  # payloads of the server's pings (each answered with a pong)

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str | None = None, origin: str | None = None,
                      host: str | None = None, headers: dict | None = None, wait: float = 10.0) -> "WebSocket":
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, limit=2**22), wait)
        host = host or f"127.0.0.1:{port}"
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
                 f"Origin: {origin or 'http://' + host}"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            writer.close()
            raise Refused(status)
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8", "surrogatepass"))
        await self.writer.drain()

    async def send_json(self, value) -> None:
        await self.send_text(json.dumps(value))

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 2**16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def receive(self, wait: float = 10.0) -> str:
        """The next text message; Closed when the server closes (or the connection ends)."""
        return await asyncio.wait_for(self._receive(), wait)

    async def receive_json(self, wait: float = 10.0):
        return json.loads(await self.receive(wait))

    async def receive_until(self, predicate, wait: float = 10.0):
        """The first JSON frame matching predicate (frames before it are skipped)."""
        async with asyncio.timeout(wait):
            while not predicate(frame := json.loads(await self._receive())):
                pass
            return frame

    async def _receive(self) -> str:
        while True:
            try:
                first, second = await self.reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.writer.close()
                raise Closed(self.close_code) from None
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self._send_frame(0x8, payload[:2])
                self.writer.close()
                raise Closed(self.close_code)
            if opcode == 0x9:
                self.pings.append(payload)
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x1:
                return payload.decode()

    async def wait_closed(self, wait: float = 10.0) -> int | None:
        """Reads until the server closes; returns its close code."""
        try:
            async with asyncio.timeout(wait):
                while True:
                    await self._receive()
        except Closed as closed:
            return closed.code

    async def close(self, code: int = 1000) -> None:
        """A clean close: close frame, then the TCP connection."""
        try:
            self._send_frame(0x8, struct.pack("!H", code))
            await self.writer.drain()
        except ConnectionError:
            pass
        self.abort()

    def abort(self) -> None:
        """The TCP connection ends at once, without a close frame (a crashed client, a lost network)."""
        self.writer.transport.abort()
