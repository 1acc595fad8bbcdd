"""Demo models. Other tooling writes these tables with plain SQL, so names, types and
database defaults are part of the contract (docs/wire-format.md)."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Cast, Concat, Now


class Product(models.Model):
    name = models.CharField(max_length=200, db_default="")
    sku = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True, db_default="")
    price = models.DecimalField(max_digits=10, decimal_places=2, db_default=0)
    stock = models.IntegerField(db_default=0)
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.sku})"


def _next_order_number():
    # 'ORD-1', 'ORD-2', ... from a sequence, so plain SQL inserts get one too (no padding:
    # lpad would truncate past its width and repeat numbers).
    nextval = models.Func(models.Value("shop_order_number_seq"), function="nextval",
                          output_field=models.BigIntegerField())
    return Concat(models.Value("ORD-"), Cast(nextval, models.TextField()), output_field=models.CharField())


class Order(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        PAID = "paid"
        SHIPPED = "shipped"
        CANCELLED = "cancelled"

    number = models.CharField(max_length=32, unique=True, db_default=_next_order_number())
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL)
    quantity = models.IntegerField(db_default=1)
    status = models.CharField(max_length=16, choices=Status.choices, db_default=Status.NEW)
    total = models.DecimalField(max_digits=10, decimal_places=2, db_default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return self.number
