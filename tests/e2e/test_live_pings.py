"""daphne's keepalive pings and time limit on pgnotify's sockets, which pgnotify.web.daphne
takes over (pings written straight to the socket, the 2-s check skipped until something is due)
with their meaning kept: a client that answers stays, one that does not is dropped after the ping
timeout, and a socket open longer than `--websocket_timeout` is closed."""

import asyncio
import time

import pytest

from tests.helpers.live import LiveSocket, session_cookie
from tests.helpers.web import Daphne, layer_env, process_env
from tests.helpers.wsclient import WebSocket

pytestmark = pytest.mark.django_db(transaction=True)
PING_TIMEOUT = 3


async def answer_pings_for(socket: WebSocket, seconds: float) -> None:
    """Reads (answering each ping) for `seconds`; no text frame is expected meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        with pytest.raises(TimeoutError):
            await socket.receive(wait=min(left, 1.0))


def test_an_answering_client_stays_and_a_silent_one_is_dropped():
    env = process_env(**layer_env("redis"))
    daphne = Daphne(env, args=("--ping-interval", "1", "--ping-timeout", str(PING_TIMEOUT))).wait_ready()
    try:
        _, cookie = session_cookie("alice")

        async def run():
            answering = await LiveSocket.connect(daphne.port, cookie)
            silent = await WebSocket.connect(daphne.port, "/ws/live/", cookie)
            await answering.subscribe("all")
            await answer_pings_for(answering.socket, 3 * PING_TIMEOUT)
            # several pings, each with autobahn's payload (sent-at and number, 12 bytes), each answered
            assert len(answering.socket.pings) >= 3
            assert all(len(payload) == 12 for payload in answering.socket.pings)
            await answering.subscribe("again")  # still open: its pongs cancelled each ping's timeout
            # the silent one read nothing for 9 s, longer than a ping and its timeout: dropped
            closed_at = time.monotonic()
            assert await silent.wait_closed(wait=5) is None  # closed without a close frame
            assert time.monotonic() - closed_at < 1.0  # it was already gone
            await answering.close()

        asyncio.run(run())
        assert any("daphne fast path" in line and "and pings" in line for line in daphne.lines), daphne.lines
        assert not [line for line in daphne.lines if "Traceback" in line]
    finally:
        daphne.stop()


def test_a_socket_past_the_websocket_timeout_is_closed():
    env = process_env(**layer_env("redis"))
    daphne = Daphne(env, args=("--websocket_timeout", "3")).wait_ready()
    try:
        _, cookie = session_cookie("alice")

        async def run():
            socket = await LiveSocket.connect(daphne.port, cookie)
            await socket.subscribe("all")
            opened = time.monotonic()
            await socket.socket.wait_closed(wait=10)
            return time.monotonic() - opened

        # daphne checks every 2 s: closed between 3 and about 5 s after it opened
        assert 2.5 < asyncio.run(run()) < 7
    finally:
        daphne.stop()
