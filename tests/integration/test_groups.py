"""DashboardSender and ChatRoomSender on the real channel layer: batching, flush, chat rooms, stats, retries."""

import asyncio
import json
from datetime import UTC, datetime

import pytest

from pgnotify.contrib.chat.handler import ChatRoomSender
from pgnotify.contrib.chat.rules import chat_group
from pgnotify.handlers.groups import DashboardSender
from pgnotify.listener import Listener, ListenerOptions
from pgnotify.listener.notification import Notification
from pgnotify.web.frames import DASHBOARD_GROUP

pytestmark = pytest.mark.django_db(transaction=True)


def change(event_id: int, channel: str = "orders", **extra) -> Notification:
    event = {"id": event_id, "txid": 1000 + event_id, "channel": channel, "table": "shop_order", "op": "INSERT",
             "pk": event_id, "ts": datetime.now(UTC).isoformat(), "row": {"id": event_id}, **extra}
    return Notification(channel, json.dumps(event))


async def joined(layer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def frames(layer, channel: str, until) -> list[dict]:
    """Dashboard frames received on `channel` until until(frames) is true."""
    received: list[dict] = []
    while not until(received):
        message = await asyncio.wait_for(layer.receive(channel), 10)
        assert message["type"] == "dashboard.frame"
        received.append(json.loads(message["text"]))
    return received


def events_in(received: list[dict]) -> list[int]:
    return [event["id"] for f in received if f["type"] == "changes" for event in f["events"]]


async def test_an_idle_event_goes_out_at_once_and_a_burst_in_few_batches(fresh_channel_layer):
    layer = fresh_channel_layer
    channel = await joined(layer, DASHBOARD_GROUP)
    sender = DashboardSender(layer)

    await sender.handle(change(1))  # no flush: idle means immediately
    first = await frames(layer, channel, lambda r: events_in(r))
    assert len(first) == 1 and first[0]["type"] == "changes"
    assert [(e["id"], e["op"], e["table"]) for e in first[0]["events"]] == [(1, "INSERT", "shop_order")]

    for event_id in range(2, 1002):
        await sender.handle(change(event_id))
    await sender.flush()
    burst = await frames(layer, channel, lambda r: len(events_in(r)) >= 1000)
    assert events_in(burst) == list(range(2, 1002))  # all of them, in order, once
    assert len(burst) <= 5, f"{len(burst)} group messages for 1,000 events"
    assert sender.events_sent == 1001


async def test_a_new_chat_row_is_sent_to_its_room_as_chat_message(fresh_channel_layer):
    layer = fresh_channel_layer
    room = await joined(layer, chat_group("lobby"))
    row = {"id": 7, "room": "lobby", "username": "ana", "message": "<b>hi</b>",
           "created_at": "2026-11-27T10:00:00+00:00", "user_id": 3}
    await ChatRoomSender(layer).handle(change(5, channel="chat", table="pgnotify_chatmessage", row=row))
    message = await asyncio.wait_for(layer.receive(room), 5)
    assert message == {"type": "chat.message", "id": 7, "room": "lobby", "user": "ana", "message": "<b>hi</b>",
                       "ts": "2026-11-27T10:00:00+00:00"}


async def forwarder_handle(layer, notification):
    sender = DashboardSender(layer)
    await sender.handle(notification)
    await sender.flush()


async def test_stats_and_state_notices_reach_the_dashboard(fresh_channel_layer):
    layer = fresh_channel_layer
    channel = await joined(layer, DASHBOARD_GROUP)
    sender = DashboardSender(layer)
    listener = Listener({}, ListenerOptions(channels=["orders"], name="wall"), sink=sender)
    sender.attach(listener)
    listener.stats.record(change(41))
    await sender.notice({"type": "listener", "state": "live", "name": "wall", "reconnects": 0})
    received = await frames(layer, channel, lambda r: len(r) >= 2)
    assert received[0] == {"type": "notice", "kind": "listener", "state": "live", "name": "wall", "reconnects": 0}
    stats = received[1]
    assert stats["type"] == "stats" and stats["name"] == "wall" and stats["last_event_id"] == 41
    assert stats["channels"]["orders"]["count"] == 1 and "queue_usage" in stats and "reconnects" in stats


class FailingFirst:
    """The real layer, whose first group_send fails as an unreachable backend would."""

    def __init__(self, layer, failures: int):
        self.layer, self.failures = layer, failures

    async def group_send(self, group, message):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("channel layer unreachable")
        await self.layer.group_send(group, message)


async def test_events_are_kept_when_the_layer_fails_and_sent_by_the_next_flush(fresh_channel_layer):
    layer = fresh_channel_layer
    channel = await joined(layer, DASHBOARD_GROUP)
    sender = DashboardSender(FailingFirst(layer, failures=1))
    sender._stats_sent = float("inf")  # no stats frames in this test
    await sender.handle(change(1))
    await sender.handle(change(2))
    await asyncio.wait_for(sender._sender, 5)
    assert [e["id"] for e in sender._pending] == [1, 2]
    await sender.flush()
    assert events_in(await frames(layer, channel, lambda r: len(events_in(r)) >= 2)) == [1, 2]
    assert sender._pending == []


async def test_stats_frames_carry_each_channels_count_so_far(fresh_channel_layer):
    """The page computes each channel's rate from the counts of successive stats frames
    (dashboard.js): each frame carries the listener's count of each channel so far."""
    layer = fresh_channel_layer
    channel = await joined(layer, DASHBOARD_GROUP)
    sender = DashboardSender(layer)
    listener = Listener({}, ListenerOptions(channels=["orders"], name="wall"), sink=sender)
    sender.attach(listener)
    counts = []
    for first in (1, 11):
        for event_id in range(first, first + 10):
            listener.stats.record(change(event_id))
        sender._stats_sent = float("-inf")  # a stats frame is due at this flush
        await sender.flush()
        received = await frames(layer, channel, lambda r: any(f["type"] == "stats" for f in r))
        [stats] = [f for f in received if f["type"] == "stats"]
        counts.append((stats["name"], stats["channels"]["orders"]["count"]))
    assert counts == [("wall", 10), ("wall", 20)]
