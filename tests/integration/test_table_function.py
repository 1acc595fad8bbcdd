"""A watched table's own change function (pgnotify/schema/table_function.py) knows the table's
columns as `migrate` found them: a column added since (by hand, or by a migration still running)
must not cost an event, nor a name in `changed`."""

import json

import pytest
from django.db import connection, transaction
from psycopg import sql

from notifyproject.shop.models import Order
from pgnotify.schema.table_function import function_name
from pgnotify.schema.tables import TableName, fetch_table_facts
from pgnotify.schema.triggers import _change_statements, sync_triggers
from pgnotify.schema.watched import Target, WatchedTable

pytestmark = pytest.mark.django_db(transaction=True)


def execute(statement: str) -> int:
    """One statement in its own committed transaction; returns the transaction's id."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return cursor.fetchone()[0]


def logged(txid: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload::text FROM pgnotify_event WHERE txid = %s::text::xid8 AND channel = 'orders' "
                       "ORDER BY id", [txid])
        return [json.loads(payload) for (payload,) in cursor.fetchall()]


def test_a_column_added_since_migrate_is_in_every_event_and_in_changed():
    order = Order.objects.create()
    execute("ALTER TABLE shop_order ADD COLUMN note text")
    try:
        [updated] = logged(execute(f"UPDATE shop_order SET note = 'first' WHERE id = {order.pk}"))
        assert (updated["op"], updated["changed"], updated["row"]["note"]) == ("UPDATE", ["note"], "first")
        [updated] = logged(execute(f"UPDATE shop_order SET note = 'second', quantity = 7 WHERE id = {order.pk}"))
        assert updated["changed"] == ["quantity", "note"]  # in the table's column order
        assert logged(execute(f"UPDATE shop_order SET note = 'second' WHERE id = {order.pk}")) == []
        [inserted] = logged(execute("INSERT INTO shop_order (note) VALUES ('new')"))
        assert (inserted["op"], inserted["row"]["note"]) == ("INSERT", "new")

        # Once `migrate` has run again, the table's own function knows the column.
        assert sync_triggers() == ["refreshed pgnotify_change on shop_order"]
        [updated] = logged(execute(f"UPDATE shop_order SET note = 'third' WHERE id = {order.pk}"))
        assert (updated["changed"], updated["row"]["note"]) == (["note"], "third")
    finally:
        execute("ALTER TABLE shop_order DROP COLUMN IF EXISTS note")
        sync_triggers()


def test_a_key_that_changes_in_a_single_row_update_lists_every_column():
    order = Order.objects.create()
    [updated] = logged(execute(f"UPDATE shop_order SET id = id + 1000000 WHERE id = {order.pk}"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute "
                       "WHERE attrelid = 'shop_order'::regclass AND attnum > 0 AND NOT attisdropped")
        [columns] = cursor.fetchone()
    assert (updated["pk"], updated["changed"]) == (order.pk + 1000000, columns)


def test_an_update_of_several_rows_reads_the_columns_as_they_are_now():
    """Several rows' UPDATE compares columns by value where that says the same as their JSON: a
    column whose type changed since `migrate` (to one whose equal values differ in JSON) takes the
    shared statement, which compares the JSON."""
    orders = [Order.objects.create(quantity=1) for _ in range(3)]
    ids = ", ".join(str(order.pk) for order in orders)
    execute("ALTER TABLE shop_order ALTER COLUMN quantity DROP DEFAULT, "
            "ALTER COLUMN quantity TYPE interval USING make_interval(days => quantity), ADD COLUMN note text")
    try:
        # '1 day' and '24 hours' are equal intervals, and different JSON: subscribers see the change.
        events = logged(execute(f"UPDATE shop_order SET quantity = interval '24 hours' WHERE id IN ({ids})"))
        assert [(e["pk"], e["changed"], e["row"]["quantity"]) for e in events] == [
            (order.pk, ["quantity"], "24:00:00") for order in orders]
        events = logged(execute(f"UPDATE shop_order SET note = 'x' WHERE id IN ({ids})"))
        assert [(e["pk"], e["changed"]) for e in events] == [(order.pk, ["note"]) for order in orders]
    finally:
        execute("ALTER TABLE shop_order ALTER COLUMN quantity TYPE integer USING extract(hour FROM quantity)::integer, "
                "ALTER COLUMN quantity SET DEFAULT 1, DROP COLUMN IF EXISTS note")
        sync_triggers()
    # As `migrate` found them again: by value.
    events = logged(execute(f"UPDATE shop_order SET quantity = 2 WHERE id IN ({ids})"))
    assert [(e["pk"], e["changed"], e["row"]["quantity"]) for e in events] == [
        (order.pk, ["quantity"], 2) for order in orders]


def test_names_holding_the_bodys_dollar_quote_are_written_in_under_another_quote():
    """The function's body is dollar-quoted ($pgnotify$): a table, column or channel name holding
    that quote is written into the body under another, and its events are whole."""
    table = WatchedTable(TableName("", "quoted$pgnotify$"), ("id",),
                         targets=[Target("chan$pgnotify$", "tests.quoted", ())])
    facts = None
    with connection.cursor() as cursor:
        try:
            cursor.execute('CREATE TABLE "quoted$pgnotify$" (id bigint PRIMARY KEY, "a$pgnotify$b" text)')
            facts = fetch_table_facts(cursor, [table.name])[table.name]
            assert facts is not None
            statements = _change_statements(facts.relation, table, facts).as_string(cursor.connection)
            assert "AS $pgnotify1$" in statements
            cursor.execute(statements)
            cursor.execute('INSERT INTO "quoted$pgnotify$" VALUES (1, \'one\')')
            cursor.execute('INSERT INTO "quoted$pgnotify$" VALUES (2, \'two\'), (3, \'three\')')
            cursor.execute('UPDATE "quoted$pgnotify$" SET "a$pgnotify$b" = upper("a$pgnotify$b")')
            cursor.execute("SELECT payload::text FROM pgnotify_event WHERE channel = 'chan$pgnotify$' ORDER BY id")
            events = [json.loads(payload) for (payload,) in cursor.fetchall()]
        finally:
            cursor.execute('DROP TABLE IF EXISTS "quoted$pgnotify$"')
            if facts is not None:
                cursor.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(
                    sql.Identifier(function_name(table, facts))).as_string(cursor.connection))
    assert [(e["op"], e["pk"], e["row"]["a$pgnotify$b"], e.get("changed")) for e in events] == [
        ("INSERT", 1, "one", None), ("INSERT", 2, "two", None), ("INSERT", 3, "three", None),
        ("UPDATE", 1, "ONE", ["a$pgnotify$b"]), ("UPDATE", 2, "TWO", ["a$pgnotify$b"]),
        ("UPDATE", 3, "THREE", ["a$pgnotify$b"])]
    assert {e["table"] for e in events} == {"quoted$pgnotify$"}
