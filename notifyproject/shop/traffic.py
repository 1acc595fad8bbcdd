"""Demo traffic: a steady mix of order INSERTs, UPDATEs and DELETEs so the dashboard moves."""

import random
import time
from collections import Counter
from decimal import Decimal

from .models import Order, Product

NEXT_STATUS = {"new": "paid", "paid": "shipped", "shipped": "shipped", "cancelled": "cancelled"}
KEEP_ORDERS = 200  # above this many traffic orders, deletes win so the table stays small


def one_change(rng: random.Random, products: list) -> str:
    """Make one change to the orders table; returns its operation."""
    count = Order.objects.count() if rng.random() < 0.1 else None
    roll = rng.random()
    if count is not None and count > KEEP_ORDERS:
        roll = 0.99
    order = None if roll < 0.45 else Order.objects.order_by("?").only("id", "status").first()
    if order is None:  # also when there is no order to change yet
        product = rng.choice(products) if products else None
        quantity = rng.randint(1, 5)
        price = product.price if product else Decimal(rng.randint(5, 200))
        Order.objects.create(product=product, quantity=quantity, total=price * quantity)
        return "INSERT"
    if roll < 0.85:
        status = "cancelled" if rng.random() < 0.1 else NEXT_STATUS[order.status]
        Order.objects.filter(pk=order.pk).update(status=status, quantity=rng.randint(1, 5))
        return "UPDATE"
    Order.objects.filter(pk=order.pk).delete()
    return "DELETE"


def run(rate: float, duration: float | None = None, seed: int | None = None, report=None) -> Counter:
    """Make `rate` changes per second for `duration` seconds (forever when None)."""
    rng = random.Random(seed)
    products = list(Product.objects.all()[:50])
    done: Counter = Counter()
    interval = 1.0 / rate
    start = next_at = time.monotonic()
    last_report = start
    while duration is None or time.monotonic() - start < duration:
        done[one_change(rng, products)] += 1
        next_at += interval
        now = time.monotonic()
        if report and now - last_report >= 5:
            last_report = now
            report(done)
        if next_at > now:
            time.sleep(next_at - now)  # pacing to the requested rate
        else:
            next_at = now  # behind: do not try to catch up in a burst
    return done
