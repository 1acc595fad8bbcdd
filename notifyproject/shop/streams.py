"""The demo's live streams: which rows each user may see (PGNOTIFY["STREAMS"] in settings)."""

from django.db.models import Q


def my_orders(user):
    """A customer sees their own orders."""
    return Q(customer_id=user.pk)
