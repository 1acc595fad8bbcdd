"""Rights while a subscription stays open (docs/live.md, "Rights"), on a real daphne and listener:
a change of the user's rights reconciles the view within a rights tick, streams whose rights
need a query see only the rows each user may see, and SSE responses end when the user logs out."""

import asyncio
import random
import threading

import pytest
from django.contrib.auth.models import Group

from notifyproject.shop.models import Order
from tests.helpers.live import EventStream, LiveSocket, db, deactivate, log_out, session_cookie
from tests.helpers.live_rights import FIELDS, settings_env, team_orders, team_query
from tests.helpers.web import WebStack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack(tmp_path):
    stack = WebStack("postgres")
    stack.env.update(settings_env(tmp_path))
    yield stack.start()
    stack.stop()


def fresh_view(rows, user_id) -> dict:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(pk=user_id)
    return {row["id"]: row for row in Order.objects.filter(rows(user)).distinct().values(*FIELDS)}


def same_view(view, expected: dict) -> bool:
    return set(view.rows) == set(expected) and all(
        view.rows[pk]["status"] == row["status"] and view.rows[pk]["quantity"] == row["quantity"]
        and view.rows[pk]["customer_id"] == row["customer_id"] for pk, row in expected.items())


def join(user_id, name="team"):
    Group.objects.get_or_create(name=name)[0].user_set.add(user_id)


def leave(user_id, name="team"):
    Group.objects.get(name=name).user_set.remove(user_id)


def test_a_user_added_to_or_removed_from_a_group_sees_rows_enter_and_leave_without_reconnecting(stack):
    alice, cookie = session_cookie("alice")
    bob, _ = session_cookie("bob")
    mine = [Order.objects.create(customer_id=alice, status="new").pk for _ in range(2)]
    bobs = [Order.objects.create(customer_id=bob, status="new").pk for _ in range(3)]
    join(bob)

    async def run():
        s = await LiveSocket.connect(stack.daphne.port, cookie)
        view = await s.subscribe("team", stream="team-orders")
        assert set(view.rows) == set(mine)
        loop = asyncio.get_running_loop()

        await db(join, alice)  # bob's orders enter alice's view as INSERTs
        started = loop.time()
        await s.until(lambda: set(view.rows) == set(mine + bobs), wait=5)
        entered = loop.time() - started
        assert {f["row"]["id"] for f in view.frames if f.get("op") == "INSERT"} == set(bobs)

        new = (await db(lambda: Order.objects.create(customer_id=bob, status="paid").pk))
        await s.until(lambda: new in view.rows)  # and bob's next order arrives live
        await db(lambda: Order.objects.filter(pk=mine[0]).update(quantity=7))
        await s.until(lambda: view.rows[mine[0]]["quantity"] == 7)

        await db(leave, alice)  # they leave as DELETEs
        started = loop.time()
        await s.until(lambda: set(view.rows) == set(mine), wait=5)
        left = loop.time() - started
        assert {f["row"]["id"] for f in view.frames if f.get("op") == "DELETE"} == {*bobs, new}
        assert same_view(view, await db(fresh_view, team_orders, alice))
        assert not s.errors
        await s.close()
        return entered, left

    entered, left = asyncio.run(run())
    print(f"\nrows entered {entered:.2f} s and left {left:.2f} s after the group changed")
    assert entered < 3 and left < 3


def churn(customers, stop, rounds):
    """Writers on the customers' orders: inserts, updates, moves between customers, deletes."""
    done = 0
    while not stop.is_set() or done < rounds:
        ids = list(Order.objects.filter(customer_id__in=customers).values_list("pk", flat=True)[:100])
        action = done % 4 if ids else 0
        if action == 0:
            Order.objects.create(customer_id=random.choice(customers), status="new")
        elif action == 1:
            Order.objects.filter(pk=random.choice(ids)).update(customer_id=random.choice(customers))
        elif action == 2:
            Order.objects.filter(pk=random.choice(ids)).update(quantity=done)
        else:
            Order.objects.filter(pk=random.choice(ids)).delete()
        done += 1
    return done


def test_a_query_stream_sends_each_user_only_the_rows_they_may_see_under_concurrent_writers(stack):
    alice, alice_cookie = session_cookie("alice")
    bob, bob_cookie = session_cookie("bob")
    a_customers = [session_cookie(f"a{n}")[0] for n in range(2)]
    b_customers = [session_cookie(f"b{n}")[0] for n in range(2)]
    for user in (alice, *a_customers):
        join(user, "A")
    for user in (bob, *b_customers):
        join(user, "B")
    customers = a_customers + b_customers
    Order.objects.bulk_create([Order(customer_id=customers[n % 4], status="new") for n in range(400)])
    marker = Order.objects.create(customer_id=alice, status="new").pk  # no writer touches it

    async def run():
        a = await LiveSocket.connect(stack.daphne.port, alice_cookie)
        b = await LiveSocket.connect(stack.daphne.port, bob_cookie)
        stop = threading.Event()
        writers = asyncio.gather(db(churn, customers, stop, 200), db(churn, customers, stop, 200))
        await asyncio.sleep(0.05)  # the writers are going
        alices = await a.subscribe("t", stream="team-query", wait_snapshot=False)
        bobs = await b.subscribe("t", stream="team-query", wait_snapshot=False)
        await a.until(lambda: alices.done, wait=30)
        await b.until(lambda: bobs.done, wait=30)
        stop.set()
        writes = sum(await writers)
        await db(lambda: Order.objects.filter(pk=marker).update(quantity=-1))  # behind every other write
        await a.until(lambda: alices.rows.get(marker, {}).get("quantity") == -1, wait=20)
        await db(lambda: Order.objects.filter(pk=marker).update(customer_id=b_customers[0]))
        await b.until(lambda: marker in bobs.rows, wait=20)
        await a.until(lambda: marker not in alices.rows, wait=20)
        assert same_view(alices, await db(fresh_view, team_query, alice))
        assert same_view(bobs, await db(fresh_view, team_query, bob))
        for view, allowed in ((alices, {*a_customers, alice}), (bobs, {*b_customers, bob})):
            rows = [row for f in view.frames if f["type"] == "snapshot" for row in f["rows"]]
            rows += [f["row"] for f in view.frames if f.get("op") in ("INSERT", "UPDATE")]
            assert rows and all(row["customer_id"] in allowed for row in rows)
        changes = sum(f["type"] == "change" for f in alices.frames + bobs.frames)
        print(f"\n{writes} writes, {changes} change frames, each user saw only their groups' orders")
        assert not a.errors and not b.errors and changes > 0
        await a.close()
        await b.close()

    asyncio.run(run())


async def ended(events: EventStream, wait: float) -> bool:
    """Reads the response until its last chunk (or the connection's end)."""
    async with asyncio.timeout(wait):
        while True:
            line = await events.reader.readline()
            if line in (b"", b"0\r\n"):
                return True


@pytest.mark.parametrize("lose", [deactivate, log_out])
def test_an_sse_response_ends_when_the_user_loses_the_right(stack, lose):
    user, cookie = session_cookie("frank")
    Order.objects.create(customer_id=user, status="new")

    async def run():
        events = await EventStream.open(stack.daphne.port, "/live/my-orders/", cookie)
        assert events.status == 200 and (await events.event())["event"] == "snapshot"
        await db(lose, user)
        started = asyncio.get_running_loop().time()
        assert await ended(events, wait=6)
        after = asyncio.get_running_loop().time() - started
        events.close()
        return after

    after = asyncio.run(run())
    assert after < 3, after
