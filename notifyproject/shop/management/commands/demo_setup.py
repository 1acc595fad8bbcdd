from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from notifyproject.shop.models import Order, Product

DEMO_USERS = [
    # username, password, staff
    ("admin", "admin", True),
    ("alice", "alice-password", False),
    ("bob", "bob-password", False),
]
PRODUCTS = [
    ("Espresso beans 1 kg", "COF-001", "19.90", 40),
    ("Ceramic mug", "MUG-002", "8.50", 120),
    ("Pour-over kettle", "KET-003", "42.00", 12),
]


class Command(BaseCommand):
    help = "Create the demo users, products and orders (idempotent) and print the credentials."

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        for username, password, staff in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": staff,
                                                                                    "is_superuser": staff})
            if created:
                user.set_password(password)
                user.save()
        products = [
            Product.objects.get_or_create(sku=sku, defaults={"name": name, "price": Decimal(price), "stock": stock})[0]
            for name, sku, price, stock in PRODUCTS
        ]
        if not Order.objects.exists():
            alice = User.objects.get(username="alice")
            for product in products:
                Order.objects.create(customer=alice, product=product, quantity=1, total=product.price)
        self.stdout.write("Demo users: " + ", ".join(f"{u} / {p}{' (staff)' if s else ''}" for u, p, s in DEMO_USERS))
