"""The fan-out under a real daphne, where frames go straight to each dashboard's socket: a
dashboard that reads slowly, while megabytes of frames are written to it, still gets every
frame whole and in order (what the socket did not take waits in the transport, in order)."""

import asyncio
import base64
import json
import os
import socket
import time

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.test import Client

from pgnotify.web.frames import DASHBOARD_GROUP, frame
from pgnotify.web.layers import dispatch as channel_layer
from tests.helpers.web import REDIS_HOST, REDIS_PORT, Daphne, layer_env, make_user, process_env

pytestmark = pytest.mark.django_db(transaction=True)
FRAMES, EVENTS_PER_FRAME, PADDING = 80, 50, "x" * 4000  # about 16 MB in all


def upgrade(port: int, cookie: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader: little room on our side
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/dashboard/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n").encode())
    sock.settimeout(30)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(65536, size - len(data)))
        assert chunk, "connection closed"
        data += chunk
    return bytes(data)


def read_message(sock: socket.socket) -> dict:
    first, second = read_exactly(sock, 2)
    assert first == 0x81 and not second & 0x80  # one unmasked text frame per message
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(read_exactly(sock, 2), "big")
    elif length == 127:
        length = int.from_bytes(read_exactly(sock, 8), "big")
    return json.loads(read_exactly(sock, length))


async def send_frames(prefix: str) -> None:
    layer = RedisChannelLayer(hosts=[f"redis://{REDIS_HOST}:{REDIS_PORT}/3"], prefix=prefix)
    try:
        for number in range(FRAMES):
            events = [{"id": number * EVENTS_PER_FRAME + i, "table": "shop_order", "pad": PADDING}
                      for i in range(EVENTS_PER_FRAME)]
            await channel_layer.group_send(layer, DASHBOARD_GROUP, frame({"type": "changes", "events": events}))
            if number == FRAMES // 2:
                await channel_layer.group_send(layer, DASHBOARD_GROUP, frame({"type": "stats", "name": "middle"}))
    finally:
        await layer.close_pools()


def test_a_slow_dashboard_gets_every_frame_whole_and_in_order():
    env = process_env(**layer_env("redis"))
    daphne = Daphne(env).wait_ready()
    try:
        client = Client()
        client.force_login(make_user("slow-reader", staff=True))
        name = settings.SESSION_COOKIE_NAME
        sock = upgrade(daphne.port, f"{name}={client.cookies[name].value}")
        started = time.monotonic()
        asyncio.run(send_frames(env["CHANNEL_LAYER_PREFIX"]))  # all written before we read any

        ids, stats_after = [], None
        expected = FRAMES * EVENTS_PER_FRAME
        while len(ids) < expected and time.monotonic() - started < 60:
            message = read_message(sock)
            if message["type"] == "changes":
                ids.extend(event["id"] for event in message["events"])
                assert all(event["pad"] == PADDING for event in message["events"])
            elif message["type"] == "stats" and message.get("name") == "middle":
                stats_after = len(ids)
        sock.close()
        assert ids == list(range(expected))
        assert stats_after == (FRAMES // 2 + 1) * EVENTS_PER_FRAME  # kept its place among the frames
        assert not [line for line in daphne.lines if "Traceback" in line or "ERROR" in line]
        # The direct socket writes (pgnotify.web.daphne) were on: an upgrade of daphne, autobahn or
        # Twisted that turns them off must fail here, not slow the dashboards down unnoticed.
        assert any("daphne fast path" in line and "off" not in line for line in daphne.lines), daphne.lines
    finally:
        daphne.stop()
