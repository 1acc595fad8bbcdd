"""The chat under a real daphne: hostile frames, crashing and vanishing clients, a killed web
process. No ghost is left: every connection that ends (whatever ends it) leaves the room, and
the presence and group memberships of a process that died expire."""

import asyncio
import json
import signal
import time

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from pgnotify.contrib.chat import presence
from pgnotify.contrib.chat.models import ChatPresence
from pgnotify.contrib.chat.rules import chat_group
from tests.helpers.support import process_env
from tests.helpers.waiting import eventually
from tests.helpers.web import Daphne, layer_env
from tests.helpers.wsclient import Closed, WebSocket

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = {
    "lone surrogate": '{"message": "a\\ud800b"}',
    "100,000-deep nesting": "[" * 100_000 + "]" * 100_000,
    "deep nesting under the size limit": '{"message": ' * 1500 + '"x"' + "}" * 1500,
    "NUL": '{"message": "a\\u0000b"}',
    "zero-width only": json.dumps({"message": "\u200b\u200c\u200d\u2060\ufeff"}),
    "over-long": json.dumps({"message": "x" * 2001}),
    "not JSON": "hello",
}


def login_cookie(username: str) -> str:
    user = get_user_model().objects.create_user(username, password="pw-" + username)
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def memberships(room: str, live_only: bool = False) -> int:
    """Rows of the room's group in channels_postgres's membership table (unexpired ones only)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_postgres_groupchannel WHERE group_key LIKE %s"
                       + (" AND expire > now()" if live_only else ""), ["%:group:" + chat_group(room)])
        return cursor.fetchone()[0]


def presence_rows(room: str) -> int:
    return ChatPresence.objects.filter(room=room).count()


async def join(port: int, room: str, cookie: str) -> WebSocket:
    socket = await WebSocket.connect(port, f"/ws/chat/{room}/", cookie)
    await socket.receive_until(lambda frame: frame["type"] == "chat.users")
    return socket


@pytest.fixture
def daphne():
    server = Daphne(process_env(**layer_env("postgres"))).wait_ready()
    yield server
    server.stop()


def is_problem(line: str) -> bool:
    return "Traceback" in line or " ERROR " in line or "Exception" in line


def problems(server: Daphne) -> list[str]:
    return [line for line in server.lines if is_problem(line)]


def first_problem(server: Daphne) -> str:
    """The server's output from its first error on: the whole traceback for the failure message."""
    lines = list(server.lines)
    start = next((n for n, line in enumerate(lines) if is_problem(line)), len(lines))
    return "\n".join(lines[start:start + 40])


def test_every_hostile_frame_gets_an_error_frame_and_the_socket_stays(daphne):
    cookie = login_cookie("alice")

    async def run():
        socket = await join(daphne.port, "hostile", cookie)
        answers = {}
        for name, frame in HOSTILE.items():
            await socket.send_text(frame)
            answers[name] = await socket.receive_json()
        await socket.send_json({"message": "still here"})  # the socket stays and still works
        await socket.close()
        return answers

    answers = asyncio.run(run())
    for name, answer in answers.items():
        assert answer["type"] == "error" and answer["message"], name
    print("\n" + "\n".join(f"{name}: {answer['message']}" for name, answer in answers.items()))
    assert "NUL" in answers["NUL"]["message"] and answers["zero-width only"]["message"] == "empty message"
    eventually(lambda: presence_rows("hostile") == 0, 10)
    assert problems(daphne) == [], first_problem(daphne)


def test_crashed_and_vanished_connections_leave_no_ghost(daphne):
    cookie, watcher_cookie = login_cookie("alice"), login_cookie("bob")
    crashes, crashed = 30, []

    async def run():
        sockets = [await join(daphne.port, "ghosts", cookie) for _ in range(crashes)]
        for number, socket in enumerate(sockets):
            # Frames that used to crash the consumer; then the client vanishes (no close frame).
            await socket.send_text(list(HOSTILE.values())[number % 3])
            try:
                await socket.receive_until(lambda frame: frame["type"] == "error", wait=5)
            except Closed as closed:
                crashed.append(closed.code)
            finally:
                socket.abort()

    asyncio.run(run())
    eventually(lambda: presence_rows("ghosts") == 0 and memberships("ghosts") == 0, 15,
               what=lambda: f"no ghost (presence rows, memberships left: {presence_rows('ghosts')}, "
                            f"{memberships('ghosts')})")
    print(f"\n{crashes} vanished connections ({len(crashed)} closed by the server first, codes {set(crashed)}) "
          f"-> no ghost left")
    assert crashed == [], daphne.lines[-30:]

    async def later_join():  # bob joins later: alice is not listed
        socket = await WebSocket.connect(daphne.port, "/ws/chat/ghosts/", watcher_cookie)
        users = await socket.receive_until(lambda frame: frame["type"] == "chat.users")
        await socket.close()
        return users["users"]

    assert asyncio.run(later_join()) == ["bob"]
    assert problems(daphne) == [], first_problem(daphne)


def test_a_killed_web_process_leaves_presence_and_memberships_that_expire():
    env = process_env(**layer_env("postgres"), CHANNEL_LAYER_GROUP_EXPIRY="4")
    doomed, survivor = Daphne(env).wait_ready(), Daphne(env).wait_ready()
    alice, bob = login_cookie("alice"), login_cookie("bob")
    try:
        async def open_both():
            return await join(doomed.port, "crash", alice), await join(survivor.port, "crash", bob)

        loop = asyncio.new_event_loop()
        sockets = loop.run_until_complete(open_both())
        eventually(lambda: memberships("crash") == 2 and presence_rows("crash") == 2, 10)
        alice_channel = ChatPresence.objects.get(username="alice").channel_name
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        killed = time.monotonic()

        # Its membership stops being renewed and the survivor deletes it once expired.
        eventually(lambda: memberships("crash") == 1, 15, what=lambda: f"one membership, not {memberships('crash')}")
        print(f"\nmembership of the killed process gone after {time.monotonic() - killed:.1f} s "
              "(group_expiry 4 s)")
        with connection.cursor() as cursor:
            cursor.execute("SELECT channel FROM channels_postgres_groupchannel WHERE group_key LIKE %s",
                           ["%:group:" + chat_group("crash")])
            assert [row[0] for row in cursor.fetchall()] != [alice_channel]
        # The survivor's own membership outlives several expiry periods (it renews it).
        time.sleep(5)  # longer than group_expiry: a membership that was not renewed would be gone
        assert memberships("crash", live_only=True) == 1

        # Presence: the killed process's row is no longer refreshed; once older than EXPIRY it
        # does not count, and the next join removes it.
        ChatPresence.objects.filter(channel_name=alice_channel).update(
            seen_at=timezone.now() - presence.EXPIRY)
        assert presence.users("crash")[0] == ["bob"]

        async def carol_joins():
            socket = await join(survivor.port, "crash", await database_sync_to_async(login_cookie)("carol"))
            await socket.close()

        loop.run_until_complete(carol_joins())
        assert not ChatPresence.objects.filter(channel_name=alice_channel).exists()
        for socket in sockets:
            socket.abort()
        loop.run_until_complete(asyncio.sleep(0))  # the aborted transports finish closing
        loop.close()
        assert problems(survivor) == [], first_problem(survivor)
    finally:
        doomed.stop()
        survivor.stop()


@pytest.mark.once
def test_closing_500_connections_of_a_busy_room_crashes_nothing():
    # The Redis layer: 500 members make every join and leave a 500-copy group message, which
    # would take minutes as rows of the PostgreSQL layer.
    server = Daphne(process_env(**layer_env("redis"))).wait_ready()
    cookies = [login_cookie(f"user{number}") for number in range(10)]
    try:
        async def run():
            sockets = []
            try:
                for start in range(0, 500, 20):  # 20 handshakes at a time: within daphne's listen backlog
                    sockets += await asyncio.gather(*(
                        join(server.port, "busy", cookies[number % 10]) for number in range(start, start + 20)))
            finally:
                await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
                await asyncio.sleep(0)  # the transports finish closing before the loop does

        started = time.monotonic()
        asyncio.run(run())
        eventually(lambda: presence_rows("busy") == 0, 60, what=lambda: f"no presence row, not {presence_rows('busy')}")
        print(f"\n500 connections opened and closed in {time.monotonic() - started:.1f} s; "
              f"presence rows left 0")
        assert problems(server) == [], first_problem(server)
    finally:
        server.stop()


def test_a_room_is_one_membership_per_web_process_and_every_socket_gets_its_messages(daphne):
    # The room's messages reach a process once (its fan-out), not once per socket.
    cookies = [login_cookie(f"fan{number}") for number in range(4)]

    async def run():
        sockets = [await join(daphne.port, "fan", cookies[number % 3]) for number in range(11)]
        visitor = await join(daphne.port, "fan", cookies[3])
        assert await database_sync_to_async(memberships)("fan") == 1
        await visitor.close()
        notices = [await socket.receive_until(lambda f: f["type"] == "chat.system" and f["message"] == "fan3 left")
                   for socket in sockets]
        assert await database_sync_to_async(memberships)("fan") == 1
        for socket in sockets:
            await socket.close()
        return notices

    assert len(asyncio.run(run())) == 11
    eventually(lambda: memberships("fan") == 0 and presence_rows("fan") == 0, 10,
               what=lambda: f"the room left (memberships {memberships('fan')}, presence {presence_rows('fan')})")
    assert problems(daphne) == [], first_problem(daphne)
