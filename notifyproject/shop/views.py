"""Demo pages of the shop."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from pgnotify.cache import cached, listener_live

from .models import Product

CATALOG_KEY = "shop:catalog"
CATALOG_TAGS = ["catalog"]  # PGNOTIFY["CACHE_INVALIDATE"] gives shop.Product this tag


def _catalog_rows() -> list[dict]:
    return list(Product.objects.order_by("name").values("name", "sku", "price", "stock", "updated_at"))


def catalog(request):
    """The product catalogue, cached until any write to shop_product (admin, psql, anything)."""
    computed = []

    def compute():
        computed.append(True)
        return _catalog_rows()

    products = cached(CATALOG_KEY, CATALOG_TAGS, compute, timeout=600)
    return render(request, "shop/catalog.html", {
        "products": products,
        "from_cache": not computed,
        "listener_live": listener_live(),
    })


@login_required
def my_orders(request):
    """The user's orders, live from the `my-orders` stream (docs/live.md): the page is static, the rows
    come over /ws/live/ (notifyproject/shop/static/shop/my-orders.js)."""
    return render(request, "shop/my_orders.html")
