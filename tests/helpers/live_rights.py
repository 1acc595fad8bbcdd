"""Test-only streams whose rights depend on the user's groups (tests/e2e/test_live_rights.py), and a
settings module that declares them for the daphne and listener subprocesses."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.db.models import Q

from tests.helpers.support import ROOT

FIELDS = ["id", "number", "status", "quantity", "customer_id"]


def team_orders(user):
    """Evaluated in Python: the user's orders and those of everyone who shares a group with them."""
    team = get_user_model().objects.filter(groups__user=user.pk).values_list("pk", flat=True)
    return Q(customer_id=user.pk) | Q(customer_id__in=sorted(set(team)))


def team_query(user):
    """Needs a query (a relation): orders whose customer is in one of the user's groups."""
    return Q(customer__groups__user=user.pk)


def settings_env(directory: Path) -> dict:
    """Environment for the subprocesses: the demo's settings plus `team-orders` and `team-query`."""
    (directory / "live_rights_settings.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        "PGNOTIFY = {**PGNOTIFY, 'STREAMS': {**PGNOTIFY['STREAMS'],  # noqa: F405\n"
        f"    'team-orders': {{'model': 'shop.Order', 'fields': {FIELDS!r},"
        " 'rows': 'tests.helpers.live_rights.team_orders'},\n"
        f"    'team-query': {{'model': 'shop.Order', 'fields': {FIELDS!r}, 'query': True,"
        " 'rows': 'tests.helpers.live_rights.team_query'}}}\n")
    return {"DJANGO_SETTINGS_MODULE": "live_rights_settings", "PYTHONPATH": f"{directory}:{ROOT}"}
