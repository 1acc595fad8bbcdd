"""/ws/live/ on a real daphne and a real listener: snapshot then changes, views per user and
filter, rows entering and leaving a view, limits and refusals (docs/live.md)."""

import asyncio

import pytest

from notifyproject.shop.models import Order
from tests.helpers.live import LiveSocket, db, deactivate, log_out, order_rows, same_rows, session_cookie
from tests.helpers.web import WebStack
from tests.helpers.wsclient import Refused, WebSocket

pytestmark = pytest.mark.django_db(transaction=True)
FIELDS = {"id", "number", "status", "quantity", "total", "created_at"}


@pytest.fixture
def stack(request):
    stack = WebStack(getattr(request, "param", "postgres")).start()
    yield stack
    stack.stop()


def make_orders(customer_id, count, status="new"):
    return [Order.objects.create(customer_id=customer_id, status=status, quantity=i + 1, total="12345678.91"
                                 if i == 0 else "1.00").pk for i in range(count)]


def update(pk, **values):
    return Order.objects.filter(pk=pk).update(**values)


@pytest.mark.parametrize("stack", ["postgres", "redis"], indirect=True)
def test_each_user_gets_their_own_rows_then_their_changes(stack):
    own_rows_then_changes(stack)


@pytest.mark.parametrize("event_source", ["wal"], indirect=True)
def test_under_the_wal_source_too(event_source):
    stack = WebStack("postgres", source=event_source).start()
    try:
        own_rows_then_changes(stack)
    finally:
        stack.stop()


def own_rows_then_changes(stack):
    """Snapshots per user and filter, then changes: rows entering and leaving views."""
    alice, alice_cookie = session_cookie("alice")
    bob, bob_cookie = session_cookie("bob")
    alice_orders = make_orders(alice, 3)
    make_orders(bob, 2)

    async def run():
        a = await LiveSocket.connect(stack.daphne.port, alice_cookie)
        b = await LiveSocket.connect(stack.daphne.port, bob_cookie)
        mine = await a.subscribe("all")
        paid = await a.subscribe("paid", filter={"status": "paid"})
        bobs = await b.subscribe("all")
        assert set(mine.rows) == set(alice_orders) and paid.rows == {}
        assert all(set(row) == FIELDS for row in mine.rows.values())
        first = mine.frames[0]
        assert first["type"] == "snapshot" and first["position"] and first["done"] is True

        await db(update, alice_orders[0], status="paid")  # enters the filtered view
        await a.until(lambda: alice_orders[0] in paid.rows and mine.rows[alice_orders[0]]["status"] == "paid")
        assert [f["op"] for f in paid.frames if f["type"] == "change"] == ["INSERT"]
        assert [f["op"] for f in mine.frames if f["type"] == "change"] == ["UPDATE"]

        await db(update, alice_orders[0], status="shipped")  # leaves the filtered view
        await a.until(lambda: alice_orders[0] not in paid.rows)
        assert paid.frames[-1]["op"] == "DELETE" and paid.frames[-1]["row"]["id"] == alice_orders[0]

        await db(update, alice_orders[1], customer_id=bob)  # leaves alice's view, enters bob's
        await a.until(lambda: alice_orders[1] not in mine.rows)
        await b.until(lambda: alice_orders[1] in bobs.rows)
        assert bobs.frames[-1]["op"] == "INSERT"

        new = (await db(make_orders, alice, 1))[0]
        await a.until(lambda: new in mine.rows)
        await db(lambda: Order.objects.filter(pk=new).delete())
        await a.until(lambda: new not in mine.rows)

        assert same_rows(mine, await db(order_rows, alice)) and same_rows(bobs, await db(order_rows, bob))
        assert not a.errors and not b.errors
        # bob's socket never carried one of alice's rows, nor alice's one of bob's beyond the one she gave away
        assert all(f["row"]["id"] not in alice_orders or f["row"]["id"] == alice_orders[1]
                   for f in bobs.frames if f["type"] == "change")
        await a.close()
        await b.close()

    asyncio.run(run())


def bulk_orders(customer_id, count):
    Order.objects.bulk_create([Order(customer_id=customer_id, status="new", quantity=1) for _ in range(count)])


def churn(customers, stop, rounds):
    """Writers on both users' orders while the snapshot is read: updates, moves, inserts, deletes."""
    import random

    done = 0
    while not stop.is_set() or done < rounds:
        ids = list(Order.objects.filter(customer_id__in=customers).values_list("pk", flat=True)[:200])
        pick = random.choice(ids)
        action = done % 4
        if action == 0:
            Order.objects.filter(pk=pick).update(quantity=done)
        elif action == 1:
            Order.objects.filter(pk=pick).update(customer_id=random.choice(customers))
        elif action == 2:
            Order.objects.create(customer_id=random.choice(customers), status="paid")
        else:
            Order.objects.filter(pk=pick).update(status=random.choice(["new", "paid", "shipped"]))
        done += 1
    return done


def test_concurrent_writers_during_the_snapshot_leave_no_gap_and_no_repeat(stack):
    import threading

    alice, alice_cookie = session_cookie("carol")
    bob, bob_cookie = session_cookie("dave")
    bulk_orders(alice, 4000)
    bulk_orders(bob, 100)

    async def run():
        a = await LiveSocket.connect(stack.daphne.port, alice_cookie)
        b = await LiveSocket.connect(stack.daphne.port, bob_cookie)
        stop = threading.Event()
        writers = asyncio.gather(db(churn, [alice, bob], stop, 150), db(churn, [alice, bob], stop, 150))
        await asyncio.sleep(0.05)  # the writers are going
        mine = await a.subscribe("all", wait_snapshot=False)
        paid = await a.subscribe("paid", wait_snapshot=False, filter={"status": ["paid"]})
        bobs = await b.subscribe("all", wait_snapshot=False)
        await a.until(lambda: mine.done and paid.done, wait=30)
        await b.until(lambda: bobs.done, wait=30)
        stop.set()
        writes = sum(await writers)
        # Made after the writers stopped (they move random rows between the users): behind every
        # other write, so once it is in, all are.
        (marker,) = await db(make_orders, alice, 1)
        await db(update, marker, quantity=-1)
        await a.until(lambda: mine.rows.get(marker, {}).get("quantity") == -1, wait=20)
        await db(update, marker, customer_id=bob)
        await b.until(lambda: marker in bobs.rows, wait=20)
        await a.until(lambda: marker not in mine.rows, wait=20)
        assert same_rows(mine, await db(order_rows, alice))
        assert same_rows(paid, await db(order_rows, alice, status="paid"))
        assert same_rows(bobs, await db(order_rows, bob))
        assert len([f for f in mine.frames if f["type"] == "snapshot"]) >= 8  # pages of at most 500 rows
        assert all(len(f["rows"]) <= 500 for f in mine.frames if f["type"] == "snapshot")
        changes = sum(f["type"] == "change" for f in mine.frames + bobs.frames)
        print(f"\n{writes} writes during the snapshots, {changes} change frames, views equal fresh snapshots")
        assert not a.errors and not b.errors and changes > 0
        await a.close()
        await b.close()

    asyncio.run(run())


def test_refusals_are_error_frames_and_the_socket_stays(stack):
    _, cookie = session_cookie("erin")

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        refused = [
            {"stream": "nope"}, {"stream": "my-orders", "filter": {"customer_id": 3}},
            {"stream": "my-orders", "filter": {"nosuch": 1}}, {"stream": "my-orders", "filter": {"total__gte": 1}},
            {"stream": "my-orders", "filter": {"status__icontains": "p"}},
            {"stream": "my-orders", "filter": {"status__in": ["x"] * 101}},
            {"stream": "my-orders", "filter": {"status": "x' OR 1=1", "customer_id": 3}},
            {"stream": "my-orders", "filter": {"status": {"$gt": ""}}},
            {"stream": "my-orders", "filter": "status=paid"},
            {"stream": "my-orders", "after": "not-a-position"},
        ]
        for number, extra in enumerate(refused):
            await s.socket.send_json({"type": "subscribe", "id": f"r{number}", **extra})
            frame = await s.socket.receive_json()
            assert frame["type"] == "error" and frame["id"] == f"r{number}" and frame["message"], frame
        for text in ["not json", "[]", '{"type": "subscribe"}', '{"type": "dance", "id": "x"}']:
            await s.socket.send_text(text)
            assert (await s.socket.receive_json())["type"] == "error"
        # An injection attempt in a declared filter's value is a value: it matches nothing.
        injected = await s.subscribe("inj", filter={"status": "x' OR 1=1 --"})
        assert injected.rows == {}
        # 1,000 subscriptions: 50 per socket, the rest refused, the socket still serves.
        for number in range(1000):
            await s.socket.send_json({"type": "subscribe", "id": f"m{number}", "stream": "my-orders"})
        frames = [await s.socket.receive_json() for _ in range(49 + 951)]
        errors = [f for f in frames if f["type"] == "error"]
        assert len(errors) == 951 and {f["id"] for f in errors} == {f"m{n}" for n in range(49, 1000)}
        await s.socket.send_json({"type": "unsubscribe", "id": "m0"})
        view = await s.subscribe("again")
        assert view.done
        await s.close()

    asyncio.run(run())


def test_anonymous_users_are_refused_at_the_handshake(stack):
    async def run():
        with pytest.raises(Refused) as refused:
            await WebSocket.connect(stack.daphne.port, "/ws/live/")
        return refused.value.status

    assert asyncio.run(run()) == 403


@pytest.mark.parametrize("lose", [deactivate, log_out])
def test_a_user_who_loses_the_right_has_the_socket_closed_with_4403(stack, lose):
    user, cookie = session_cookie("frank")

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        await s.subscribe("all")
        await db(lose, user)
        started = asyncio.get_running_loop().time()
        code = await s.socket.wait_closed(wait=5)
        return code, asyncio.get_running_loop().time() - started

    code, after = asyncio.run(run())
    assert code == 4403 and after < 3.5, (code, after)
