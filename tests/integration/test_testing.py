"""pgnotify.testing, as docs/testing.md promises it: the examples of the page run as written (a
Django TestCase and a pytest test), events are the block's own and in order, nothing needs a
commit, and with the WAL source (no triggers on the tables) the same events are captured."""

import io
import re
import types
import unittest

import psycopg
from django.db import connection

from notifyproject.shop.models import Order, Product
from pgnotify.schema.triggers import sync_triggers
from pgnotify.testing import capture_events, run_handlers
from tests.helpers.support import ROOT, database_url_for_tests

PAGE = ROOT / "docs" / "testing.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def module_of(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(code, f"{PAGE}:{name}", "exec"), module.__dict__)
    return module


def test_the_pages_testcase_example_passes(django_db_setup, django_db_blocker):
    module = module_of(examples()[0], "testcase_example")
    cases = [value for value in vars(module).values() if isinstance(value, type)
             and issubclass(value, unittest.TestCase) and value.__module__ == module.__name__]
    assert [case.__name__ for case in cases] == ["ShippingTests"]
    out = io.StringIO()
    with django_db_blocker.unblock():
        result = unittest.TextTestRunner(stream=out, verbosity=2).run(
            unittest.defaultTestLoader.loadTestsFromTestCase(cases[0]))
    assert result.wasSuccessful() and result.testsRun == 2, out.getvalue()
    assert module.shipped and len(module.shipped) == 1  # the handler ran, once


def test_the_pages_pytest_example_passes(db):
    module = module_of(examples()[1], "pytest_example")
    module.test_a_new_order_sends_an_insert(pgnotify_capture=capture_events)


def test_the_fixture_is_the_capture(pgnotify_capture):
    assert pgnotify_capture is capture_events


def test_events_are_the_blocks_own_in_order_without_a_commit(db):
    before = Product.objects.create(name="before", sku="T-before", price="1.00")
    with capture_events() as events:
        product = Product.objects.create(name="p", sku="T-p", price="2.50")
        # Another session's committed write is not the block's.
        with psycopg.connect(database_url_for_tests(), autocommit=True) as other:
            other.execute("INSERT INTO shop_product (name, sku, price, stock, description, updated_at) "
                          "VALUES ('other', 'T-other', 1, 0, '', now())")
        product.price = "3.00"
        product.save()
        Product.objects.filter(pk=before.pk).delete()
        Product.objects.filter(pk=product.pk).update(name="p")  # no visible change: no event
    assert [(e["op"], e["pk"]) for e in events] == [
        ("INSERT", product.pk), ("UPDATE", product.pk), ("DELETE", before.pk)]
    assert events[1]["changed"] == ["price", "updated_at"]
    assert events[1]["row"]["price"] == 3  # an exact number, as the listener decodes it
    assert connection.in_atomic_block  # nothing committed


def test_with_the_wal_source_the_tables_get_triggers_for_the_block_only(db, settings):
    settings.PGNOTIFY = {**settings.PGNOTIFY, "SOURCE": "wal"}
    sync_triggers()  # as migrate leaves a database of the WAL source: no change triggers
    assert not change_triggers_on("shop_order")
    order = Order.objects.create(number="W-1")
    with capture_events() as events:
        Order.objects.filter(pk=order.pk).update(status="paid")
    assert [(e["op"], e["pk"], e["changed"]) for e in events] == [("UPDATE", order.pk, ["status"])]
    assert not change_triggers_on("shop_order")  # gone again after the block


def test_run_handlers_calls_sync_async_and_handle_objects(db):
    with capture_events() as events:
        Order.objects.create(number="H-1")
    seen = []

    async def async_handler(notification):
        seen.append(("async", notification.event["op"]))

    class WithHandle:
        def handle(self, notification):
            seen.append(("object", notification.channel))

    run_handlers(events, [lambda n: seen.append(("sync", n.event["pk"])), async_handler, WithHandle()])
    assert seen == [("sync", events[0]["pk"]), ("async", "INSERT"), ("object", "orders")]


def change_triggers_on(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'pgnotify_change%%'",
                       [table])
        return [name for (name,) in cursor.fetchall()]

