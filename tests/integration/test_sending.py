"""pgnotify.notify / anotify (docs/handlers.md#sending): encoding, the 7999-byte limit in bytes, transactions."""

import json
import time

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from notifyproject.shop.demo import Inbox
from pgnotify import MAX_PAYLOAD_BYTES, InvalidChannelError, PayloadTooLarge, anotify, notify
from pgnotify.connection import listener_conninfo

pytestmark = pytest.mark.django_db(transaction=True)

CHANNEL = "sending_tests"
HOSTILE_CHANNELS = ["", "x" * 64, "orders; DROP TABLE shop_order", 'or"ders', "or'ders", "two words",
                    "nul\x00byte", "canal_ção", "😀", "orders\n", None, 42]


@pytest.fixture
def inbox():
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        inbox = Inbox(conn, "sending", timeout=5.0)
        inbox.listen(CHANNEL)
        yield inbox


@pytest.fixture
def received(inbox):
    """Payloads on CHANNEL committed before now: a marker is sent on a connection of its own
    (outside any transaction of the test) and everything before it is taken."""
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as sender:

        def take() -> list[str]:
            marker = f"marker {time.monotonic_ns()}"
            sender.execute("SELECT pg_notify(%s, %s)", [inbox.end_channel, marker])
            payloads = []
            while (item := inbox.next()) is not None:
                if (item.channel, item.payload) == (inbox.end_channel, marker):
                    return payloads
                payloads.append(item.payload)
            raise AssertionError("the marker did not arrive")

        yield take


def test_limit_is_7999_bytes(received):
    largest = "a" * 7999
    notify(CHANNEL, largest)
    with pytest.raises(PayloadTooLarge) as refused:
        notify(CHANNEL, "a" * 8000)
    assert (refused.value.size, refused.value.limit) == (8000, MAX_PAYLOAD_BYTES) == (8000, 7999)
    assert "8000 bytes" in str(refused.value) and "7999" in str(refused.value)
    assert received() == [largest]


def test_limit_counts_bytes_not_characters(received):
    fits = "ç" * 3999 + "a"  # 4000 characters, 7999 bytes
    notify(CHANNEL, fits)
    for too_large in ["ç" * 4000, "😀" * 2000, {"text": "ç" * 4000}]:  # 8000+ bytes in far fewer characters
        with pytest.raises(PayloadTooLarge) as refused:
            notify(CHANNEL, too_large)
        assert refused.value.size >= 8000
    assert received() == [fits]


def test_dicts_and_lists_are_sent_as_json_and_strings_as_is(received):
    notify(CHANNEL, {"event": "user_login", "user_id": 123, "note": "ação ☕"})
    notify(CHANNEL, [1, "two", None])
    notify(CHANNEL, "plain text {not json")
    with pytest.raises(TypeError):
        notify(CHANNEL, 3.14)
    first, second, third = received()
    assert json.loads(first) == {"event": "user_login", "user_id": 123, "note": "ação ☕"}
    assert json.loads(second) == [1, "two", None]
    assert third == "plain text {not json"


def test_notify_in_atomic_is_sent_on_commit(received):
    with transaction.atomic():
        notify(CHANNEL, "on commit")
        # Delivery follows commit order: a marker committed now arrives, our notify not yet.
        assert received() == []
    assert received() == ["on commit"]


def test_notify_in_rolled_back_atomic_is_dropped(received):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        notify(CHANNEL, "rolled back")
        raise Rollback
    with transaction.atomic():
        notify(CHANNEL, "kept")
        try:
            with transaction.atomic():  # a savepoint rolled back inside a committed transaction
                notify(CHANNEL, "savepoint rolled back")
                raise Rollback
        except Rollback:
            pass
    assert received() == ["kept"]


def test_invalid_channel_names_are_refused(received):
    for channel in HOSTILE_CHANNELS:
        with pytest.raises(InvalidChannelError) as refused:
            notify(channel, "x")
        message = str(refused.value)
        assert "invalid channel name" in message and "\n" not in message, channel
    assert received() == []


async def test_anotify():
    async with await psycopg.AsyncConnection.connect(autocommit=True, **listener_conninfo()) as conn:
        await conn.execute("LISTEN async_sending_tests")
        try:
            await anotify("async_sending_tests", {"sent": "async"})
            with pytest.raises(PayloadTooLarge):
                await anotify("async_sending_tests", "x" * 8000)
        finally:
            # anotify ran in sync_to_async's thread: its connection must go before the test database does.
            await sync_to_async(connections.close_all)()
        notifications = [n async for n in conn.notifies(timeout=5, stop_after=1)]
    assert [(n.channel, json.loads(n.payload)) for n in notifications] == [("async_sending_tests", {"sent": "async"})]
