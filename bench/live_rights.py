"""Cost of a stream's rights through the live router (docs/live.md, "Limits and costs"):
events/s with 100 subscribers of one stream, rights evaluated in Python vs rights that need a
query (one membership query per event batch, a UNION of one part per distinct rights Q).

    DATABASE_URL=... python -m bench.live_rights [--subscribers 100] [--batch 50] [--batches 40]
"""

import argparse
import asyncio
import os
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from notifyproject.shop.models import Order

    User = get_user_model()
    users = [User.objects.get_or_create(username=f"bench-live-{n}")[0] for n in range(args.subscribers)]
    group = Group.objects.get_or_create(name="bench-live")[0]
    group.user_set.add(*users)
    orders = list(Order.objects.filter(customer__in=users).values_list("pk", "customer_id")[:args.batch])
    if len(orders) < args.batch:
        Order.objects.bulk_create([Order(customer=users[n % len(users)], status="new") for n in range(args.batch)])
        orders = list(Order.objects.filter(customer__in=users).values_list("pk", "customer_id")[:args.batch])
    try:
        for query in (False, True):
            rate, queries = asyncio.run(measure(users, orders, query, args.batches))
            kind = "query (per-user Q, relation)" if query else "Python (customer_id = user)"
            print(f"{kind}: {rate:,.0f} events/s through the router, {args.subscribers} subscribers, "
                  f"batches of {args.batch}, {queries} membership queries")
    finally:
        Order.objects.filter(customer__in=users).delete()
        User.objects.filter(pk__in=[user.pk for user in users]).delete()
        group.delete()


async def measure(users, orders, query: bool, batches: int) -> tuple[float, int]:
    from django.db.models import Q

    from notifyproject.shop.models import Order
    from pgnotify.listener import exactjson
    from pgnotify.listener.snapshots import Snapshot
    from pgnotify.web.live.positions import Position
    from pgnotify.web.live.router import Router, Subscription
    from pgnotify.web.live.streams import Stream

    def rows(user):
        return Q(customer__groups__user=user.pk, customer_id=user.pk) if query else Q(customer_id=user.pk)

    stream = Stream("bench", Order, ("id", "status", "quantity", "customer_id"), {}, rows, False, query)
    router = Router(layer=None)
    delivered = []

    async def send(frame):
        delivered.append(frame)

    for number, user in enumerate(users):
        subscription = Subscription(f"s{number}", stream, stream.rights(user), stream.filter(None), send)
        subscription.position = Position(Snapshot.parse("1:1:"))
        router.add(subscription)
        router.live(subscription)
    event_id = 0
    started = time.perf_counter()
    for number in range(batches):
        events = []
        for pk, customer_id in orders:
            event_id += 1
            events.append({"id": event_id, "txid": 1000 + event_id, "model": "shop.order", "op": "UPDATE",
                           "pk": pk, "row": {"id": pk, "status": "new", "quantity": number,
                                             "customer_id": customer_id}, "changed": ["quantity"]})
        await router.send(exactjson.dumps({"type": "changes", "events": events}))
    elapsed = time.perf_counter() - started
    assert len(delivered) == batches * len(orders), len(delivered)  # each event to its one subscriber
    return batches * len(orders) / elapsed, router.queries


if __name__ == "__main__":
    main()
