"""Streams (pgnotify.web.live): declarations and their checks, rights and filters evaluated in Python."""

from decimal import Decimal

import pytest
from django.core.checks import run_checks
from django.db.models import F, Q
from django.test import override_settings

from notifyproject.shop.models import Order
from pgnotify.listener.snapshots import Snapshot
from pgnotify.web.live.matching import Matcher, Unevaluable
from pgnotify.web.live.positions import Position, decode, includes
from pgnotify.web.live.streams import MAX_FILTER_TERMS, MAX_IN_VALUES, Refused, get
from tests.settings import PGNOTIFY

pytestmark = pytest.mark.once

ROW = {"id": 17, "number": "A-17", "customer_id": 7, "status": "paid", "quantity": 2,
       "total": Decimal("99.90"), "created_at": "2026-11-27T10:00:00.123456+00:00", "product_id": None}


def matches(q, row=ROW) -> bool:
    return Matcher(Order, q).matches(row)


def test_q_lookups_and_connectives_evaluate_like_the_database():
    assert matches(Q(customer_id=7)) and not matches(Q(customer_id=8))
    assert matches(Q(customer=7))  # the field's name or its attname
    assert matches(Q(status__in=["paid", "new"])) and not matches(Q(status__in=["new"]))
    assert matches(Q(total__gte="99.9")) and matches(Q(total__lt=100)) and not matches(Q(total__gt=Decimal("99.90")))
    assert matches(Q(product__isnull=True)) and not matches(Q(customer__isnull=True))
    assert matches(Q(status="new") | Q(customer_id=7)) and not matches(Q(status="new") & Q(customer_id=7))
    assert matches(~Q(status="new")) and not matches(~Q(customer_id=7))
    assert matches(Q(created_at__gte="2026-11-27T09:00:00+00:00"))
    assert not matches(Q(customer_id=7), {**ROW, "customer_id": None})


@pytest.mark.parametrize("q", [Q(customer__username="alice"), Q(status__icontains="p"), Q(total=F("quantity")),
                               Q(nosuch=1), Q(customer_id=None), Q(quantity="many")])
def test_what_python_cannot_evaluate_is_refused(q):
    with pytest.raises(Unevaluable):
        Matcher(Order, q)


def test_equalities_are_the_top_level_and_terms_only():
    assert Matcher(Order, Q(customer_id=7) & Q(status="paid")).equalities() == [("customer_id", 7), ("status", "paid")]
    assert Matcher(Order, Q(customer_id=7) | Q(status="paid")).equalities() == []
    assert Matcher(Order, ~Q(customer_id=7)).equalities() == []


def test_client_filters_use_declared_fields_and_operators_only():
    stream = get("my-orders")
    assert stream.fields == ("id", "number", "status", "quantity", "total", "created_at")
    assert stream.filter({"status": "paid"}).matches(ROW)
    assert stream.filter({"status": ["new", "paid"]}).matches(ROW)
    assert not stream.filter({"status__in": ["new"]}).matches(ROW)
    refused = [{"customer_id": 3}, {"customer": 3}, {"total__gte": 10}, {"status__icontains": "p"},
               {"status": "x' OR 1=1", "id": 1}, {"status__in": ["x"] * (MAX_IN_VALUES + 1)},
               {f"s{i}": 1 for i in range(MAX_FILTER_TERMS + 1)}, {"status": {"$ne": 1}}, "status=paid",
               {"status__isnull": "yes"}, {"status": None}, {"status__exact__in": ["x"]}]
    for data in refused:
        with pytest.raises(Refused):
            stream.filter(data)
    # An injection attempt in a value is only a value: it matches no row.
    assert not stream.filter({"status": "x' OR 1=1"}).matches(ROW)


def test_rows_hold_the_declared_fields_only():
    assert get("my-orders").visible({**ROW, "secret": 1}) == {k: ROW[k] for k in get("my-orders").fields}


def test_unknown_stream_is_refused():
    for name in ["nope", None, 3, "../my-orders"]:
        with pytest.raises(Refused):
            get(name)


def stream_errors(streams) -> list[tuple[str, str]]:
    with override_settings(PGNOTIFY={**PGNOTIFY, "STREAMS": streams}):
        return [(e.id, e.msg) for e in run_checks() if e.id.startswith(("pgnotify.E06", "pgnotify.E08"))]


GOOD = {"model": "shop.Order", "fields": ["id", "status"], "rows": "notifyproject.shop.streams.my_orders"}


@pytest.mark.parametrize(("declaration", "check_id"), [
    ({**GOOD, "model": "shop.Nope"}, "pgnotify.E061"),
    ({**GOOD, "model": "auth.Group"}, "pgnotify.E080"),  # not watched
    ({**GOOD, "fields": ["id", "nosuch"]}, "pgnotify.E081"),
    ({**GOOD, "model": "auth.User", "fields": ["id", "password"]}, "pgnotify.E082"),  # excluded in WATCH
    ({**GOOD, "rows": "notifyproject.shop.streams.nosuch"}, "pgnotify.E063"),
    ({**GOOD, "filters": {"total": ["eq"]}}, "pgnotify.E083"),  # not a declared field
    ({**GOOD, "filters": {"status": ["like"]}}, "pgnotify.E084"),
    ({**GOOD, "anonymous": "yes"}, "pgnotify.E065"),
    ({**GOOD, "fields": ["status"]}, "pgnotify.E066"),
    ({**GOOD, "colour": 1}, "pgnotify.E069"),
])
def test_bad_declarations_are_check_errors(declaration, check_id):
    errors = stream_errors({"s": declaration})
    assert check_id in [i for i, _ in errors], errors
    with override_settings(PGNOTIFY={**PGNOTIFY, "STREAMS": {"s": declaration}}), pytest.raises(Refused):
        get("s")  # and the stream is not served


def test_the_demo_declaration_passes_the_checks():
    assert stream_errors(PGNOTIFY["STREAMS"]) == []
    assert stream_errors({"Bad Name": GOOD})[0][0] == "pgnotify.E060"


def test_positions_round_trip_and_refuse_garbage():
    position = Position(Snapshot.parse("100:105:101,103"), 1700000000.5, {7: 104})
    again = decode(position.encode())
    assert (again.snapshot, again.taken, list(again.applied)) == (position.snapshot, 1700000000.5, [7])
    assert again.covers(7, 0) and again.covers(50, 102) and not again.covers(8, 103)
    for garbage in ["", "x", 3, "eyJzIjoxfQ", "A" * 200_000]:
        with pytest.raises(ValueError):
            decode(garbage)


def test_a_checkpoint_moves_a_position_only_when_it_sees_all_the_position_sees():
    older = Snapshot.parse("100:105:101,103")
    assert includes(Snapshot.parse("106:106:"), older)
    assert includes(Snapshot.parse("101:107:101,103,106"), older)
    assert not includes(Snapshot.parse("100:104:"), older)  # does not see 104
    assert not includes(Snapshot.parse("102:107:102"), older)  # 102 is seen by older, not by it
    position = Position(older, 1.0, {9: 104, 10: 106})
    assert position.advance(Snapshot.parse("105:107:106"), 2.0)
    assert position.applied == {10: 106} and position.taken == 2.0
