"""ChatConsumer behind the project's websocket stack (origin check, sessions, the channel layer
on the test database) with WebsocketCommunicator; live delivery through a real `listen_notify`."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from pgnotify import conf
from pgnotify.contrib.chat import rules as chat
from pgnotify.contrib.chat.models import ChatMessage, ChatPresence
from pgnotify.contrib.chat.routing import websocket_urlpatterns
from pgnotify.web import fanout
from pgnotify.web.security import OriginValidator
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


@pytest.fixture(autouse=True)
async def channel_layer():
    """The project's channel layer (on the test database), closed with the test's event loop."""
    layer = get_channel_layer()
    if hasattr(layer, "close"):
        # Opened here, so that close() below finds the pool even if no consumer finished opening it.
        await layer.django_db.get_db_pool()
    yield layer
    if hasattr(layer, "close"):
        await layer.close()


@pytest.fixture
def application():
    """The chat's routes behind the websocket stack of notifyproject.asgi (its HTTP side is not needed here)."""
    return OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


@pytest.fixture
def session_cookie():
    """Logs a new user in; returns the Cookie header value of their session."""

    def login(username: str) -> str:
        user = get_user_model().objects.create_user(username, password="pw-" + username)
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"

    return login


class Chat:
    """A websocket client of one room, reading frames with timeouts."""

    def __init__(self, application, room: str, cookie: str | None = None, origin: str = "http://127.0.0.1"):
        headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        self.communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/", headers=headers)

    async def connect(self):
        connected, code = await self.communicator.connect(timeout=TIMEOUT)
        if not connected:
            await self.close()  # the refused consumer ends; nothing is left running
        return connected, code

    async def refused_with(self) -> int:
        """Refusals accept, then close with a code the browser sees (4403, 4404)."""
        connected, _ = await self.communicator.connect(timeout=TIMEOUT)
        assert connected
        output = await self.communicator.receive_output(timeout=TIMEOUT)
        assert output["type"] == "websocket.close", output
        await self.communicator.disconnect(timeout=TIMEOUT)
        return output["code"]

    async def send(self, frame):
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def receive(self) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=TIMEOUT))

    async def receive_until(self, predicate) -> tuple[dict, list[dict]]:
        """The first frame matching predicate, and the frames before it."""
        skipped = []
        while not predicate(frame := await self.receive()):
            skipped.append(frame)
        return frame, skipped

    async def close(self):
        await self.communicator.disconnect(timeout=TIMEOUT)


async def joined(client: Chat) -> list[dict]:
    """Frames up to the user list that follows a join (history and system notices)."""
    frame, before = await client.receive_until(lambda f: f["type"] == "chat.users")
    return [*before, frame]


async def test_anonymous_user_is_refused(application):
    assert await Chat(application, "lobby").refused_with() == 4403


@pytest.mark.parametrize("room", ["", "a" * 51, "has space", "dot.ted", "sl/ash", "é", "<b>", "a%2Fb"])
async def test_bad_room_names_are_refused(application, session_cookie, room):
    cookie = await database_sync_to_async(session_cookie)("alice")
    assert await Chat(application, room, cookie).refused_with() == 4404


async def test_foreign_origin_is_refused(application, session_cookie):
    cookie = await database_sync_to_async(session_cookie)("alice")
    connected, _ = await Chat(application, "lobby", cookie, origin="http://evil.example").connect()
    assert not connected


async def test_history_is_the_last_50_messages_oldest_first(application, session_cookie):
    cookie = await database_sync_to_async(session_cookie)("alice")

    def write_history():
        ChatMessage.objects.bulk_create(
            [ChatMessage(room="history", username=f"user{i % 3}", message=f"message {i}") for i in range(60)]
            + [ChatMessage(room="elsewhere", username="bob", message="not here")]
        )

    await database_sync_to_async(write_history)()
    client = Chat(application, "history", cookie)
    assert (await client.connect())[0]
    frames = await joined(client)
    history = [f for f in frames if f["type"] == "chat.message"]
    assert [f["message"] for f in history] == [f"message {i}" for i in range(10, 60)]
    assert all(f["history"] is True and f["room"] == "history" for f in history)
    assert [f["id"] for f in history] == sorted(f["id"] for f in history)
    assert set(history[0]) == {"type", "id", "room", "user", "message", "ts", "history"}
    assert history[0]["user"] == "user1"
    assert {"type": "chat.system", "room": "history", "message": "alice joined"}.items() <= frames[50].items()
    assert frames[-1] == {"type": "chat.users", "room": "history", "users": ["alice"]}
    await client.close()



async def test_room_messages_that_arrive_while_the_history_is_read_follow_it_once(
        application, session_cookie, channel_layer, monkeypatch):
    cookie = await database_sync_to_async(session_cookie)("alice")
    await database_sync_to_async(ChatMessage.objects.create)(room="during", username="bob", message="in the history")
    read_history = chat.history

    async def arrive(frames):
        # One message the history already holds (committed as it was read), one it does not.
        for message_id, text in ((frames[-1]["id"], "in the history"), (10**9, "after the history")):
            await channel_layer.group_send(chat.chat_group("during"), {
                "type": "chat.message", "id": message_id, "room": "during", "user": "bob", "message": text,
                "ts": "2026-12-05T00:00:00+00:00"})
        consumer = next(iter(fanout.broadcaster_for(channel_layer, chat.chat_group("during")).consumers))
        await eventually_async(lambda: len(consumer.pending) == 2, TIMEOUT,
                               what="both messages held back while the history is read")

    def history_meanwhile(room):
        frames = read_history(room)
        async_to_sync(arrive)(frames)
        return frames

    monkeypatch.setattr(chat, "history", history_meanwhile)
    client = Chat(application, "during", cookie)
    assert (await client.connect())[0]
    frames = await joined(client)
    assert [(f["message"], f.get("history", False)) for f in frames if f["type"] == "chat.message"] == [
        ("in the history", True), ("after the history", False)]
    await client.close()


async def test_message_length_limits(application, session_cookie):
    cookie = await database_sync_to_async(session_cookie)("alice")
    client = Chat(application, "limits", cookie)
    assert (await client.connect())[0]
    await joined(client)
    for bad in ("", "x" * (chat.MAX_LENGTH + 1)):
        await client.send({"message": bad})
        error = await client.receive()
        assert error["type"] == "error" and error["message"]
    await client.send({"message": "y" * chat.MAX_LENGTH})
    await client.send("not json")  # its error frame proves the good one before it was handled
    assert (await client.receive())["type"] == "error"
    stored = await database_sync_to_async(list)(ChatMessage.objects.filter(room="limits").values_list("message"))
    assert stored == [("y" * chat.MAX_LENGTH,)]
    await client.close()


async def test_frames_that_are_not_a_message_object_get_an_error_and_the_connection_stays(
        application, session_cookie):
    cookie = await database_sync_to_async(session_cookie)("alice")
    client = Chat(application, "shapes", cookie)
    assert (await client.connect())[0]
    await joined(client)
    for bad in ("hello", "[1, 2]", '"text"', "null", '{"message": 5}', '{"text": "hi"}', "{"):
        await client.send(bad)
        error = await client.receive()
        assert error["type"] == "error" and isinstance(error["message"], str), bad
    await client.communicator.send_to(bytes_data=b'{"message": "bytes"}')
    assert (await client.receive())["type"] == "error"
    await client.close()


async def test_flood_control_allows_ten_per_second_then_errors_and_stays_open(application, session_cookie):
    cookie = await database_sync_to_async(session_cookie)("alice")
    client = Chat(application, "flood", cookie)
    assert (await client.connect())[0]
    await joined(client)
    for i in range(11):
        await client.send({"message": f"flood {i}"})
    error = await client.receive()
    assert error["type"] == "error" and "10 messages per second" in error["message"]
    count = await database_sync_to_async(ChatMessage.objects.filter(room="flood").count)()
    assert count == 10
    await client.send("still here?")  # the connection stays open and answers
    assert (await client.receive())["type"] == "error"
    await client.close()


def test_rate_limiter_window_slides():
    now = [0.0]
    limiter = chat.RateLimiter(limit=10, window=1.0, clock=lambda: now[0])
    assert all(limiter.accept() for _ in range(10))
    assert not limiter.accept()
    now[0] = 0.999
    assert not limiter.accept()
    now[0] = 1.0
    assert limiter.accept()


async def test_messages_travel_through_postgres_to_every_user_of_the_room(application, session_cookie, listener):
    await asyncio.to_thread(listener)
    alice_cookie = await database_sync_to_async(session_cookie)("alice")
    bob_cookie = await database_sync_to_async(session_cookie)("bob")
    alice = Chat(application, "live", alice_cookie)
    assert (await alice.connect())[0]
    await joined(alice)
    bob = Chat(application, "live", bob_cookie)
    assert (await bob.connect())[0]
    await joined(bob)
    system, _ = await alice.receive_until(lambda f: f["type"] == "chat.system")
    assert system["message"] == "bob joined"
    users, _ = await alice.receive_until(lambda f: f["type"] == "chat.users")
    assert users["users"] == ["alice", "bob"]

    await alice.send({"message": "hello from alice"})
    for client in (alice, bob):  # the sender gets its own message back like everyone else
        frame, _ = await client.receive_until(lambda f: f["type"] == "chat.message")
        assert {k: frame[k] for k in ("room", "user", "message")} == {
            "room": "live", "user": "alice", "message": "hello from alice"}
        assert "history" not in frame and frame["id"] and frame["ts"]

    await bob.close()
    system, _ = await alice.receive_until(lambda f: f["type"] == "chat.system")
    assert system["message"] == "bob left"
    users, _ = await alice.receive_until(lambda f: f["type"] == "chat.users")
    assert users["users"] == ["alice"]
    await alice.close()
    assert not await database_sync_to_async(ChatPresence.objects.exists)()


def test_presence_counts_connections_and_forgets_dead_ones():
    from django.utils import timezone

    from pgnotify.contrib.chat import presence

    assert presence.join("room", "specific.a!1", "alice") is True  # first connection: a join
    assert presence.join("room", "specific.a!2", "alice") is False  # second tab: no new join
    assert presence.join("room", "specific.b!1", "bob") is True
    assert presence.users("room")[0] == ["alice", "bob"]
    assert presence.leave("specific.a!1") is False  # alice still has a tab open
    assert presence.leave("specific.a!2") is True
    assert presence.leave("specific.a!2") is False  # already gone

    # bob's web process died without a goodbye: his row stops counting once it is too old.
    ChatPresence.objects.filter(channel_name="specific.b!1").update(
        seen_at=timezone.now() - presence.EXPIRY - presence.EXPIRY)
    assert presence.users("room")[0] == []
    presence.join("room", "specific.c!1", "carol")
    assert list(ChatPresence.objects.values_list("username", flat=True)) == ["carol"]
    earlier = presence.users("room")[1]
    presence.heartbeat("specific.c!1")
    assert presence.users("room")[1] > earlier


def test_the_chat_brings_its_channel_to_the_listener():
    assert "chat" in conf.listen_channels()
    without_chat = [app for app in settings.INSTALLED_APPS if app != "pgnotify.contrib.chat"]
    with override_settings(INSTALLED_APPS=without_chat, PGNOTIFY={**settings.PGNOTIFY, "LISTEN": []}):
        assert "chat" not in conf.listen_channels()
