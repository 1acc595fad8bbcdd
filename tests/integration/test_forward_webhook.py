"""Forwarding to webhooks: every event POSTed once, signed, in order per channel; 5xx, hanging and
closed receivers lose nothing while the position holds; 4xx answers are dead letters (counted,
logged at a limited rate, kept in a file, never retried); after kill -9 the repeats carry the
same id, body and signature; the docs' Django view, served for real, checks all of it."""

import asyncio
import hashlib
import hmac
import json
import logging
import sys
import types
import uuid

import pytest

from pgnotify.forwarding import Webhook
from tests.helpers.brokers import (
    ForwardingProcess,
    WebhookReceiver,
    code_block,
    next_event_id,
    order_events_since,
    position_covers,
    start_listener,
    write_rows,
)
from tests.helpers.faults import RecordingSink, Writers, record_figures
from tests.helpers.support import database_url_for_tests
from tests.helpers.waiting import eventually, eventually_async

pytestmark = pytest.mark.once

pytest.importorskip("aiohttp")

SECRET = "a-secret-of-32-characters-000000"


def signed(received) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers["X-Pgnotify-Signature"])


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.close()


def first_occurrences(received: list, channel: str | None = None) -> list[int]:
    seen, ids = set(), []
    for request in received:
        for event in json.loads(request.body) if request.body.startswith(b"[") else [json.loads(request.body)]:
            if event["id"] not in seen and (channel is None or event["channel"] == channel):
                seen.add(event["id"])
                ids.append(event["id"])
    return ids


@pytest.mark.django_db(transaction=True)
async def test_every_event_is_posted_once_signed_in_order(receiver):
    sink = RecordingSink()
    forwarder = Webhook(url=receiver.url, secret=SECRET)
    _, stop, task = start_listener(f"hook-{uuid.uuid4().hex[:8]}", ["orders", "products"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        assert await write_rows(30, products=10, prefix=uuid.uuid4().hex[:6]) == 70
        await sink.wait_for(lambda: len(sink.events()) == 70)
        await eventually_async(lambda: forwarder.forwarded == 70)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    received = receiver.accepted()
    assert len(received) == len(receiver.received) == 70  # each once, none refused or failed
    for channel in ("orders", "products"):
        handed = [n for n in sink.events() if n.channel == channel]
        mine = [r for r in received if r.headers["X-Pgnotify-Channel"] == channel]
        assert [json.loads(r.body) for r in mine] == [n.event for n in handed]  # in order
        assert [r.body.decode() for r in mine] == [n.payload for n in handed]  # the exact text
        assert [int(r.headers["X-Pgnotify-Event-Id"]) for r in mine] == [n.event["id"] for n in handed]
    assert all(signed(r) for r in received)
    assert {r.headers["Content-Type"] for r in received} == {"application/json"}


async def test_batches_are_arrays_in_order_with_every_id(receiver):
    from pgnotify.listener.notification import Notification

    forwarder = Webhook(url=receiver.url, secret=SECRET, batch=10)
    try:
        for i in range(1, 26):
            await forwarder.handle(Notification("orders", json.dumps({"id": i, "txid": i, "op": "INSERT"})))
        await forwarder.flush()
    finally:
        await forwarder.close()
    bodies = [json.loads(r.body) for r in receiver.accepted()]
    assert all(isinstance(body, list) and 1 <= len(body) <= 10 for body in bodies)
    assert [event["id"] for body in bodies for event in body] == list(range(1, 26))
    for request in receiver.accepted():
        ids = [event["id"] for event in json.loads(request.body)]
        assert request.headers["X-Pgnotify-Event-Id"] == ", ".join(map(str, ids))
        assert signed(request)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_nothing_is_lost_while_the_receiver_fails_hangs_or_is_gone(receiver):
    name = f"hook-down-{uuid.uuid4().hex[:8]}"
    sink = RecordingSink()
    forwarder = Webhook(url=receiver.url, secret=SECRET, timeout=0.5)
    _, stop, task = start_listener(name, ["orders"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        before = await write_rows(5)
        await eventually_async(lambda: forwarder.forwarded == before)
        for outage in ("500", "hang", "gone"):
            await outage_and_back(outage, receiver, forwarder, sink, name)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await forwarder.close()
    received = receiver.accepted()
    assert first_occurrences(received) == [n.event["id"] for n in sink.events()]  # every event, in order
    assert {r.status for r in receiver.received} == {200, 500}  # 500s were answered, then 200s
    record_figures("webhook_outage", {"events": len(sink.events()), "accepted": len(received),
                                      "failed_attempts": forwarder.failures})


async def outage_and_back(outage: str, receiver: WebhookReceiver, forwarder, sink, name: str) -> None:
    if outage == "gone":
        receiver.stop()  # connections refused
    else:
        receiver.mode = int(outage) if outage.isdigit() else outage
    failures, forwarded = forwarder.failures, forwarder.forwarded
    total = len(sink.events()) + await write_rows(5)
    await sink.wait_for(lambda: len(sink.events()) == total)  # the listener goes on
    await eventually_async(lambda: forwarder.failures >= failures + 2, within=15)  # retried, and failed again
    down_ids = [n.event["id"] for n in sink.events()[forwarded:]]
    assert await asyncio.to_thread(position_covers, name, down_ids) == 0  # the position waits
    receiver.mode = "ok"
    if outage == "gone":
        receiver.start()
    await eventually_async(lambda: forwarder.forwarded == total, within=20)
    await eventually_async(lambda: position_covers(name, down_ids) == len(down_ids), within=10)


@pytest.mark.django_db(transaction=True)
async def test_refused_events_are_dead_letters_counted_logged_and_kept(receiver, tmp_path, caplog):
    name = f"hook-4xx-{uuid.uuid4().hex[:8]}"
    dead_letters = tmp_path / "dead.jsonl"
    sink = RecordingSink()
    forwarder = Webhook(url=receiver.url, secret=SECRET, dead_letter_file=str(dead_letters))
    _, stop, task = start_listener(name, ["orders"], [sink, forwarder])
    caplog.set_level(logging.WARNING, logger="pgnotify.handlers.forwarding.webhook")
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        await write_rows(1)
        await eventually_async(lambda: forwarder.forwarded == 1)
        first = sink.events()[0].event["id"]
        receiver.refuse.update({first + 1, first + 3, first + 5})  # three of the next six
        await write_rows(3)  # 1 + 2 + 3 orders
        await eventually_async(lambda: forwarder.forwarded == 7)
        ids = [n.event["id"] for n in sink.events()]
        await eventually_async(lambda: position_covers(name, ids) == 7)  # the position moved past the refused ones
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    refused = sorted(receiver.refuse)
    assert forwarder.dead_letters == 3 and forwarder.failures == 0
    statuses = {}
    for request in receiver.received:
        statuses.setdefault(int(request.headers["X-Pgnotify-Event-Id"]), []).append(request.status)
    assert statuses == {i: [422] if i in refused else [200] for i in ids}  # each posted once: no retry
    lines = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert [line["id"] for line in lines] == refused
    assert [line["event"] for line in lines] == [n.event for n in sink.events() if n.event["id"] in refused]
    assert {(line["status"], line["response"]) for line in lines} == {(422, "refused: bad order")}
    warnings = [r.getMessage() for r in caplog.records if r.name == "pgnotify.handlers.forwarding.webhook"]
    # The first refusal is logged at once, the next two are counted for the next line (a minute later).
    assert warnings == [f"webhook {receiver.url} refused 1 events: HTTP 422 for event {refused[0]}: refused: bad order"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_after_kill_9_the_repeats_carry_the_same_id_body_and_signature(receiver):
    name = f"hook-kill-{uuid.uuid4().hex[:8]}"
    entry = {"handler": "pgnotify.forwarding.Webhook", "options": {"url": receiver.url, "secret": SECRET}}

    def posted_ids() -> list[int]:
        return [int(r.headers["X-Pgnotify-Event-Id"]) for r in receiver.accepted()]

    def posted_beyond_position() -> bool:
        ids = posted_ids()
        return bool(ids) and position_covers(name, ids) < len(ids)

    first = await asyncio.to_thread(lambda: ForwardingProcess(name, ["orders"], entry).wait_live())
    first_id = await asyncio.to_thread(next_event_id)
    writers = Writers(database_url_for_tests(), count=2, rows=300).start()
    second = None
    try:
        await asyncio.to_thread(writers.wait_rows, 50)
        await asyncio.to_thread(eventually, posted_beyond_position, 30, "events posted beyond the position")
        await asyncio.to_thread(first.kill)
        second = await asyncio.to_thread(lambda: ForwardingProcess(name, ["orders"], entry).wait_live())
        rows = await asyncio.to_thread(writers.finish)
        committed = await asyncio.to_thread(order_events_since, first_id)
        assert len(committed) == rows
        await asyncio.to_thread(eventually, lambda: len(set(posted_ids())) >= rows, 60, "every event posted")
    finally:
        if second is not None:
            await asyncio.to_thread(second.stop)
    by_id: dict[int, list] = {}
    for request in receiver.accepted():
        by_id.setdefault(int(request.headers["X-Pgnotify-Event-Id"]), []).append(request)
    assert sorted(by_id) == [event["id"] for event in committed]
    repeats = {i: group for i, group in by_id.items() if len(group) > 1}
    assert repeats, "the restarted listener replayed nothing the killed one had posted"
    for group in repeats.values():
        assert len({(r.body, r.headers["X-Pgnotify-Signature"]) for r in group}) == 1
    record_figures("webhook_kill_9", {"events": rows, "posted": len(receiver.accepted()),
                                      "repeated_events": len(repeats)})


# -- the docs' receiver, a Django view served by a real HTTP server


@pytest.fixture
def documented_view(settings):
    """The view of docs/forwarding/webhooks.md, verbatim, routed at /hooks/orders/."""
    views = types.ModuleType("documented_webhook_views")
    exec(compile(code_block("forwarding/webhooks.md", "## A receiver: a Django view"), "webhooks.md", "exec"),
         views.__dict__)
    from django.urls import path

    urls = types.ModuleType("documented_webhook_urls")
    urls.urlpatterns = [path("hooks/orders/", views.orders_webhook)]
    sys.modules[urls.__name__] = urls
    settings.ROOT_URLCONF = urls.__name__
    settings.ORDERS_WEBHOOK_SECRET = SECRET
    yield views
    del sys.modules[urls.__name__]


@pytest.mark.django_db(transaction=True)
async def test_the_documented_django_view_checks_signatures_and_drops_repeats(documented_view, live_server, caplog):
    import aiohttp

    caplog.set_level(logging.INFO, logger="billing")
    url = f"{live_server.url}/hooks/orders/"
    sink = RecordingSink()
    forwarder = Webhook(url=url, secret=SECRET)
    _, stop, task = start_listener(f"hook-doc-{uuid.uuid4().hex[:8]}", ["orders"], [sink, forwarder])
    try:
        await sink.wait_for(lambda: "live" in sink.states())
        await write_rows(3)  # 1 + 2 + 3 orders
        await eventually_async(lambda: forwarder.forwarded == 6)
        first = sink.events()[0]
        # A repeat (as after a crash) is answered 2xx and not worked on again.
        await forwarder.handle(first)
        await forwarder.flush()
        # A forged request: the body changed, the signature did not.
        forged = Webhook(url=url, secret="another-secret-of-enough-length")
        await forged.handle(sink.events()[1])
        await forged.flush()
        await forged.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await forwarder.close()
    applied = [r.getMessage() for r in caplog.records if r.name == "billing"]
    assert applied == [f"order {n.event['pk']} INSERT None" for n in sink.events()]  # each once
    assert (forwarder.forwarded, forwarder.dead_letters) == (7, 0)
    assert forged.dead_letters == 1  # 403: refused, not retried
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as response:
        assert response.status == 403  # unsigned
