"""Positions as snapshots (pgnotify.listener.snapshots, pgnotify.listener.eventlog): visibility, out-of-order
commits that "id > last id" would lose, retention pruning and the behind_retention notice."""

import asyncio
import json
import uuid
from datetime import timedelta

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.listener import Listener, ListenerOptions
from pgnotify.listener.eventlog import EventLog
from pgnotify.listener.snapshots import Snapshot
from tests.helpers.faults import RecordingSink, record_figures


async def test_snapshot_sees_agrees_with_postgresql(db):
    conninfo = listener_conninfo()
    async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
        text = (await (await conn.execute("SELECT pg_current_snapshot()::text")).fetchone())[0]
        snapshot = Snapshot.parse(text)
        probes = sorted({1, snapshot.xmin - 1, snapshot.xmin, snapshot.xmax - 1, snapshot.xmax, snapshot.xmax + 5,
                         *snapshot.in_progress} - {0})
        cursor = await conn.execute(
            "SELECT x, pg_visible_in_snapshot(x::text::xid8, %s::pg_snapshot) FROM unnest(%s::bigint[]) x",
            [text, probes])
        for txid, visible in await cursor.fetchall():
            assert snapshot.sees(txid) == visible, txid


async def insert_order(conn) -> int:
    return (await (await conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id")).fetchone())[0]


async def event_of(conn, pk: int) -> int:
    cursor = await conn.execute(
        "SELECT id FROM pgnotify_event WHERE channel = 'orders' AND (payload->>'pk')::bigint = %s", [pk])
    return (await cursor.fetchone())[0]


async def run_until(listener: Listener, sink: RecordingSink, predicate, within: float = 10.0):
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:
        await sink.wait_for(predicate, within)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.django_db(transaction=True)
async def test_out_of_order_commit_is_replayed_where_id_watermark_loses_it():
    """A inserts first (lower event id) but commits last; B commits in between. A reader that
    keeps "the highest id seen" passes A for good; the snapshot position does not."""
    conninfo = listener_conninfo()
    name = f"unit-{uuid.uuid4().hex[:8]}"
    options = ListenerOptions(channels=["orders"], name=name)
    first = RecordingSink()
    await run_until(Listener(conninfo, options, first), first, lambda: "live" in first.states())

    async with (await psycopg.AsyncConnection.connect(**conninfo) as a,
                await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as b):
        pk_a = await insert_order(a)  # transaction A stays open
        pk_b = await insert_order(b)  # B commits at once
        id_a, id_b = await event_of(a, pk_a), await event_of(b, pk_b)
        assert id_a < id_b
        watermark = id_b  # what "id > last id" records after handing B on

        # A listener hands B on and records its position while A is still open, then stops.
        second = RecordingSink()
        await run_until(Listener(conninfo, options, second), second,
                        lambda: [n for n in second.events() if n.event["id"] == id_b])
        await a.commit()  # A commits while no listener runs

        cursor = await b.execute("SELECT id FROM pgnotify_event WHERE id > %s AND channel = 'orders'", [watermark])
        assert await cursor.fetchall() == [], "the id watermark never sees A"
        cursor = await b.execute("SELECT count(*) FROM pgnotify_event WHERE id = %s", [id_a])
        assert (await cursor.fetchone())[0] == 1, "yet A's event is committed"

    # The snapshot position catches A up, and does not hand B on again.
    third = RecordingSink()
    await run_until(Listener(conninfo, options, third), third, lambda: "live" in third.states())
    replayed = [n.event["id"] for n in third.events()]
    assert replayed == [id_a]
    assert all(n.replayed for n in third.events())
    assert {"state": "replaying", "events": 1}.items() <= third.notices[1].items()


async def backdate(conn, event_ids: list[int], age: str) -> None:
    await conn.execute("UPDATE pgnotify_event SET created_at = now() - %s::interval WHERE id = ANY(%s)",
                       [age, event_ids])


@pytest.mark.django_db(transaction=True)
async def test_prune_deletes_old_events_in_batches():
    conninfo = listener_conninfo()
    async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
        await conn.execute("INSERT INTO shop_order SELECT FROM generate_series(1, 25)")
        ids = [row[0] for row in await (await conn.execute(
            "SELECT id FROM pgnotify_event WHERE channel = 'orders' ORDER BY id")).fetchall()]
        assert len(ids) == 25
        await backdate(conn, ids[:23], "2 hours")
        log = EventLog(conn)
        assert await log.prune(timedelta(hours=1), batch=5, max_batches=3) == (15, False)  # 3 batches of 5: more left
        assert await log.prune(timedelta(hours=1), batch=5, max_batches=3) == (8, True)
        assert await log.prune(timedelta(hours=1), batch=5, max_batches=3) == (0, True)
        left = [row[0] for row in await (await conn.execute("SELECT id FROM pgnotify_event ORDER BY id")).fetchall()]
        assert left == ids[23:]


@pytest.mark.django_db(transaction=True)
async def test_position_older_than_retention_says_so_loudly_and_goes_on():
    conninfo = listener_conninfo()
    name = f"retention-{uuid.uuid4().hex[:8]}"
    async with (await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn,
                await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as watcher):
        await watcher.execute("LISTEN system")
        # A position recorded two hours ago; three events committed since.
        snapshot = (await (await conn.execute("SELECT pg_current_snapshot()::text")).fetchone())[0]
        await conn.execute("INSERT INTO pgnotify_listener (name, snapshot, updated_at) "
                           "VALUES (%s, %s, now() - interval '2 hours')", [name, snapshot])
        pks = [await insert_order(conn) for _ in range(3)]
        ids = [await event_of(conn, pk) for pk in pks]
        # The oldest was pruned meanwhile (by the active listener of another name); the next is due.
        await backdate(conn, ids[:1], "3 hours")
        assert await EventLog(conn).prune(timedelta(hours=1)) == (1, True)
        await backdate(conn, ids[1:2], "3 hours")

        sink = RecordingSink()
        options = ListenerOptions(channels=["orders"], name=name, retention=timedelta(hours=1))
        await run_until(Listener(conninfo, options, sink), sink, lambda: "live" in sink.states())

        notices = {notice["state"]: notice for notice in sink.notices}
        assert "older than the retention" in notices["behind_retention"]["warning"]
        assert sink.states().index("behind_retention") < sink.states().index("replaying")
        # Goes on from the oldest event kept, then prunes the one now older than retention.
        assert [n.event["id"] for n in sink.events()] == ids[1:]
        left = {row[0] for row in await (await conn.execute(
            "SELECT id FROM pgnotify_event WHERE id = ANY(%s)", [ids])).fetchall()}
        assert left == {ids[2]}
        # The same notice went out on channel 'system'.
        async for notify in watcher.notifies(timeout=2):
            if json.loads(notify.payload).get("state") == "behind_retention":
                break
        else:
            pytest.fail("no behind_retention notice on channel 'system'")
    record_figures("retention", {"replayed_after_gap": len(sink.events()), "pruned_by_listener": 1})
