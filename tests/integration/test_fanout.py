"""Dashboard fan-out per process: one channel-layer subscription, frames written to every local
dashboard, the subscription gone with the last dashboard, and back after a channel-layer error."""

import asyncio
import itertools
import json
import logging
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from notifyproject.asgi import application
from pgnotify.web import fanout
from pgnotify.web.frames import DASHBOARD_GROUP, frame
from tests.helpers.waiting import eventually_async
from tests.helpers.web import make_user

pytestmark = [pytest.mark.django_db(transaction=True)]
HEADERS = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
DASHBOARDS = 4


@database_sync_to_async
def staff_cookie(username: str) -> tuple:
    client = Client()
    client.force_login(make_user(username, staff=True))
    name = settings.SESSION_COOKIE_NAME
    return b"cookie", f"{name}={client.cookies[name].value}".encode()


async def open_dashboards(count: int) -> list[WebsocketCommunicator]:
    cookie = await staff_cookie("fanout-boss")
    communicators = []
    for _ in range(count):
        communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[*HEADERS, cookie])
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        communicators.append(communicator)
    return communicators


async def members(layer) -> list[str]:
    return sorted(await layer.django_db.retrieve_group_channels(layer._group_key(DASHBOARD_GROUP)))


async def test_one_subscription_per_process_reaches_every_dashboard_and_ends_with_the_last(fresh_channel_layer):
    layer = fresh_channel_layer
    dashboards = await open_dashboards(DASHBOARDS)
    broadcaster = fanout.broadcaster_for(layer, DASHBOARD_GROUP)
    assert broadcaster is not None and len(broadcaster.consumers) == DASHBOARDS
    assert await members(layer) == [broadcaster.channel_name]  # one member for the whole process

    events = [{"id": 7, "op": "UPDATE", "table": "shop_order", "pk": 3}]
    await layer.group_send(DASHBOARD_GROUP, frame({"type": "changes", "events": events}))
    for dashboard in dashboards:
        assert json.loads(await dashboard.receive_from(timeout=5)) == {"type": "changes", "events": events}
    assert broadcaster.frames == 1  # delivered once by the layer, written four times

    for dashboard in dashboards[:-1]:
        await dashboard.disconnect()
    assert await members(layer) == [broadcaster.channel_name]  # one dashboard left: still subscribed
    await layer.group_send(DASHBOARD_GROUP, frame({"type": "stats", "name": "default"}))
    assert json.loads(await dashboards[-1].receive_from(timeout=5)) == {"type": "stats", "name": "default"}

    await dashboards[-1].disconnect()
    assert fanout.broadcaster_for(layer, DASHBOARD_GROUP) is None
    assert await members(layer) == []  # the last one out left the group


class FailingOnce:
    """The real channel layer, whose next receive fails once (as a lost backend would)."""

    def __init__(self, layer):
        self._layer = layer
        self.failures = 1

    def __getattr__(self, name):
        return getattr(self._layer, name)

    async def receive(self, channel: str) -> dict:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection lost")
        return await self._layer.receive(channel)


async def test_the_subscription_survives_a_channel_layer_error(fresh_channel_layer, caplog):
    layer = FailingOnce(fresh_channel_layer)
    received: list[str] = []

    class Sink:  # stands in for a websocket: what the broadcaster writes to it
        async def send(self, text_data):
            received.append(text_data)

    sink = Sink()
    accepted = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="pgnotify.web.fanout"):
        broadcaster = await fanout.join(sink, layer, DASHBOARD_GROUP, accept=_set(accepted))
        assert accepted.is_set()

        async def until_resubscribed():
            while layer.failures or not broadcaster.subscribed.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await layer.group_send(DASHBOARD_GROUP, frame({"type": "stats", "name": "again"}))
            while not received:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(until_resubscribed(), 10)
        assert json.loads(received[0]) == {"type": "stats", "name": "again"}
        assert any("re-subscribing" in record.getMessage() for record in caplog.records)
    await fanout.leave(sink, layer, DASHBOARD_GROUP)
    assert await members(fresh_channel_layer) == []


def _set(event: asyncio.Event):
    async def accept():
        event.set()
    return accept


def test_waiting_changes_frames_are_merged_in_order_and_other_frames_keep_their_place():
    def changes(*ids):
        return frame({"type": "changes", "events": [{"id": i, "table": "shop_order"} for i in ids]})

    stats, empty = frame({"type": "stats", "name": "default"}), frame({"type": "changes", "events": []})
    merged = fanout.coalesce([changes(1), changes(2, 3), stats, changes(4), empty, changes(5), changes(6)])
    decoded = [json.loads(m["text"]) for m in merged]
    assert [d["type"] for d in decoded] == ["changes", "stats", "changes", "changes", "changes"]
    assert [[e["id"] for e in d.get("events", [])] for d in decoded] == [[1, 2, 3], [], [4], [], [5, 6]]
    assert decoded[1] == {"type": "stats", "name": "default"}
    big = [changes(*range(i * 1000, i * 1000 + 1000)) for i in range(20)]  # about 37 kB each
    assert 1 < len(fanout.coalesce(big)) < 20  # merged, but capped in size
    assert all(len(m["text"]) <= fanout.MAX_MERGED_CHARS for m in fanout.coalesce(big))


@pytest.mark.once
def test_a_jump_in_a_senders_numbers_is_a_gap_and_a_new_sender_from_one_is_not(monkeypatch):
    broadcaster = fanout.Broadcaster(layer=None, group=DASHBOARD_GROUP)
    seen = []

    class Live:
        def missed_messages(self):
            seen.append("resync")

    broadcaster.consumers[Live()] = True
    broadcaster._subscribed_at = fanout.time.monotonic()
    numbered = [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2)]
    assert not any(broadcaster._missed_before({"sender": s, "seq": n}) for s, n in numbered)
    assert broadcaster._missed_before({"sender": "a", "seq": 5})  # 4 was lost
    assert not broadcaster._missed_before({"sender": "a", "seq": 4})  # late or repeated: not a loss
    assert not broadcaster._missed_before({"type": "other"})  # not numbered: not from a DashboardSender
    assert not broadcaster._missed_before({"sender": "c", "seq": 7})  # sending before we subscribed
    monkeypatch.setattr(fanout.time, "monotonic", lambda: broadcaster._subscribed_at + fanout.SENDER_GRACE + 1)
    assert broadcaster._missed_before({"sender": "d", "seq": 7})  # first heard of long after: 1..6 lost
    broadcaster._gap()
    assert seen == ["resync"] and broadcaster.gaps == 1


async def test_rounds_to_many_sockets_are_spaced_and_what_arrives_meanwhile_is_merged(fresh_channel_layer):
    layer, group, sockets, sent = fresh_channel_layer, "pgnotify.test.spacing", fanout.UNSPACED_SOCKETS + 250, 30
    spacing = fanout.round_spacing(sockets)
    assert spacing > 0.005 and fanout.round_spacing(fanout.UNSPACED_SOCKETS) == 0.0

    class Sink:  # stands in for a websocket: when each frame was written to it, and its events
        def __init__(self):
            self.frames: list[tuple[float, list[int]]] = []

        async def send(self, text_data):
            self.frames.append((time.monotonic(), [e["id"] for e in json.loads(text_data)["events"]]))

    sinks = [Sink() for _ in range(sockets)]
    for sink in sinks:
        await fanout.join(sink, layer, group, accept=_set(asyncio.Event()))
    for number in range(1, sent + 1):
        await layer.group_send(group, frame({"type": "changes", "events": [{"id": number}]}))
    await eventually_async(lambda: all(sum(len(ids) for _, ids in s.frames) == sent for s in sinks), 20,
                           what="every event at every sink")
    for sink in sinks:
        assert [i for _, ids in sink.frames for i in ids] == list(range(1, sent + 1))  # none lost, in order
    rounds = [at for at, _ in sinks[0].frames]
    assert len(rounds) < sent  # merged
    assert min(b - a for a, b in itertools.pairwise(rounds)) >= spacing * 0.95, rounds
    print(f"\n{sent} frames to {sockets} sockets in {len(rounds)} rounds, at least {spacing * 1000:.0f} ms apart")
    for sink in sinks:
        await fanout.leave(sink, layer, group)
    assert fanout.broadcaster_for(layer, group) is None
