"""The change event of docs/wire-format.md, as the triggers send it and as the listener hands it on."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.test import override_settings

from notifyproject.shop.demo import Inbox
from notifyproject.shop.models import Product
from pgnotify.connection import listener_conninfo
from pgnotify.schema.triggers import sync_triggers
from tests.helpers.support import ManagedProcess

pytestmark = pytest.mark.django_db(transaction=True)

ISO_WITH_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d")
EVENT_FIELDS = {"id", "channel", "table", "model", "op", "pk", "ts", "txid", "row"}


@pytest.fixture
def inbox():
    """A dedicated LISTEN connection on the test database."""
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        yield Inbox(conn, "tests", timeout=5.0)


def next_event(inbox, **match) -> dict:
    """The next notification's event whose fields equal `match`; others are skipped."""
    while (item := inbox.next()) is not None:
        event = json.loads(item.payload)
        if all(event.get(key) == value for key, value in match.items()):
            return event
    raise AssertionError(f"no event matching {match} within {inbox.timeout} s")


def columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                       "AND table_schema = current_schema() ORDER BY ordinal_position", [table])
        return [name for (name,) in cursor.fetchall()]


def logged(event_id: int) -> tuple[str, int, dict]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT channel, txid::text::bigint, payload::text FROM pgnotify_event WHERE id = %s",
                       [event_id])
        channel, txid, payload = cursor.fetchone()
    return channel, txid, json.loads(payload)


def run_in_transaction(statement: str, params=()) -> tuple:
    """Run one statement in its own committed transaction; returns (first row, txid)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone() if cursor.description else None
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return row, cursor.fetchone()[0]


def assert_event_shape(event: dict, *, op: str, pk: int, txid: int) -> None:
    expected_fields = EVENT_FIELDS | ({"changed"} if op == "UPDATE" else set())
    assert set(event) == expected_fields
    assert (event["channel"], event["table"], event["model"], event["op"]) == ("orders", "shop_order",
                                                                               "shop.order", op)
    assert type(event["id"]) is int and type(event["txid"]) is int and event["txid"] == txid
    assert type(event["pk"]) is int and event["pk"] == pk == event["row"]["id"]
    assert ISO_WITH_OFFSET.fullmatch(event["ts"]), event["ts"]
    ts = datetime.fromisoformat(event["ts"])
    assert ts.utcoffset() is not None and abs(datetime.now(UTC) - ts) < timedelta(minutes=1)
    assert set(event["row"]) == set(columns("shop_order"))
    channel, logged_txid, logged_event = logged(event["id"])
    assert (channel, logged_txid, logged_event) == ("orders", txid, event)


def test_insert_update_delete_events_carry_every_field(inbox):
    inbox.listen("orders")
    (pk,), insert_txid = run_in_transaction(
        "INSERT INTO shop_order (quantity, total) VALUES (3, 29.70) RETURNING id")
    inserted = next_event(inbox, pk=pk)
    assert_event_shape(inserted, op="INSERT", pk=pk, txid=insert_txid)
    row = inserted["row"]
    assert row["quantity"] == 3 and Decimal(str(row["total"])) == Decimal("29.70")
    assert row["status"] == "new" and row["number"].startswith("ORD-") and row["customer_id"] is None
    assert ISO_WITH_OFFSET.fullmatch(row["created_at"])

    # Columns assigned in reverse order: `changed` still follows the table's column order.
    _, update_txid = run_in_transaction(
        "UPDATE shop_order SET total = 50, status = 'paid', quantity = 5 WHERE id = %s", [pk])
    updated = next_event(inbox, pk=pk)
    assert_event_shape(updated, op="UPDATE", pk=pk, txid=update_txid)
    assert updated["changed"] == ["quantity", "status", "total"]
    assert updated["changed"] == [c for c in columns("shop_order") if c in {"total", "status", "quantity"}]
    assert (updated["row"]["status"], updated["row"]["quantity"]) == ("paid", 5)

    _, delete_txid = run_in_transaction("DELETE FROM shop_order WHERE id = %s", [pk])
    deleted = next_event(inbox, pk=pk)
    assert_event_shape(deleted, op="DELETE", pk=pk, txid=delete_txid)
    assert deleted["row"] == updated["row"]  # the old row
    assert inserted["id"] < updated["id"] < deleted["id"]
    assert inserted["txid"] < updated["txid"] < deleted["txid"]


def test_pk_keeps_its_json_type(inbox):
    """A text primary key arrives as a JSON string (sessions.Session watched for the test)."""
    watch = {**settings.PGNOTIFY["WATCH"], "sessions.Session": {"channel": "sessions_test"}}
    try:
        with override_settings(PGNOTIFY={**settings.PGNOTIFY, "WATCH": watch}):
            assert "attached pgnotify_change on django_session" in sync_triggers()
        inbox.listen("sessions_test")
        Session.objects.create(session_key="k" * 32, session_data="{}", expire_date=datetime.now(UTC))
        event = next_event(inbox, table="django_session")
        assert event["pk"] == "k" * 32 and event["model"] == "sessions.session"
    finally:
        assert "dropped pgnotify_change on django_session" in sync_triggers()


def test_password_never_leaves_the_database(inbox, listener):
    as_json = listener("--name", "exclude-json")
    human = ManagedProcess("listen_notify", "--name", "exclude-human", "--stats-interval", "0")
    try:
        human.wait_for_line("live", timeout=20)
        inbox.listen("users", "cache_invalidate")
        user = get_user_model().objects.create_user("carol", "carol@example.com", "first-secret-password")
        hashes = [user.password]
        inserted = next_event(inbox, channel="users", pk=user.pk)
        assert inserted["op"] == "INSERT" and "password" not in inserted["row"]
        assert inserted["row"]["username"] == "carol"

        # Only the password changes: no change event, but caches are still invalidated.
        hashes.append(make_password("second-secret-password"))
        get_user_model().objects.filter(pk=user.pk).update(password=hashes[1])
        skipped = []
        while (item := inbox.next()) is not None and json.loads(item.payload).get("op") != "UPDATE":
            skipped.append(item)
        assert (item.channel, json.loads(item.payload)) == (
            "cache_invalidate", {"table": "auth_user", "op": "UPDATE", "tags": ["users"]})
        # A statement's cache invalidation comes before its change events (trigger name order).
        assert [n.channel for n in skipped] == []  # no change event
        get_user_model().objects.filter(pk=user.pk).update(first_name="Carol")
        updated = next_event(inbox, channel="users", pk=user.pk)
        assert updated["op"] == "UPDATE" and updated["changed"] == ["first_name"]

        # Password and another column: the event names only the visible one.
        hashes.append(make_password("third-secret-password"))
        get_user_model().objects.filter(pk=user.pk).update(password=hashes[2], last_name="Jones")
        updated = next_event(inbox, channel="users", pk=user.pk)
        assert updated["changed"] == ["last_name"] and "password" not in updated["row"]
        pk = user.pk
        user.delete()
        deleted = next_event(inbox, channel="users", pk=pk)
        assert deleted["op"] == "DELETE" and "password" not in deleted["row"]

        def saw_delete(lines):
            return any(f"DELETE auth_user pk={pk}" in line for line in lines)

        human.wait_for(saw_delete)
        as_json.wait_for(lambda _: [j for j in as_json.json_lines()
                                    if isinstance(j["payload"], dict) and j["payload"].get("op") == "DELETE"
                                    and j["payload"].get("table") == "auth_user"])
    finally:
        human.stop()
    as_json.stop()
    user_events = [j["payload"] for j in as_json.json_lines() if j["channel"] == "users"]
    assert [e["op"] for e in user_events] == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    output = "\n".join(as_json.stdout_lines + as_json.stderr_lines + human.stdout_lines + human.stderr_lines)
    with connection.cursor() as cursor:
        cursor.execute("SELECT string_agg(payload::text, ' ') FROM pgnotify_event")
        event_log = cursor.fetchone()[0]
    for password_hash in hashes:
        secret = password_hash.split("$")[-1]  # the hash proper, without algorithm and salt
        assert password_hash not in output and secret not in output
        assert secret not in event_log
    assert '"password"' not in event_log and '"password"' not in output


@pytest.mark.parametrize("description", ["d" * 20_000, "ç" * 4500, "😀" * 2250],
                         ids=["20000-characters", "9000-bytes-of-c-cedilla", "9000-bytes-of-emoji"])
def test_rows_too_large_for_notify_are_written_and_delivered_whole(description, inbox, listener):
    process = listener("--name", "large-rows")
    inbox.listen("products")
    product = Product.objects.create(name="Big", sku="BIG-1", description=description)
    raw = inbox.next()
    assert len(raw.payload.encode()) < 8000
    announced = json.loads(raw.payload)
    assert announced["truncated"] is True and "row" not in announced and announced["pk"] == product.pk

    Product.objects.filter(pk=product.pk).update(description=description + "!")

    def two_product_events(_):
        events = [j["payload"] for j in process.json_lines() if j["channel"] == "products"]
        return events if len(events) >= 2 else None

    inserted, updated = process.wait_for(two_product_events)
    for event, text in ((inserted, description), (updated, description + "!")):
        assert "truncated" not in event
        assert event["row"]["description"] == text and len(event["row"]["description"].encode()) >= 9000
        assert set(event) >= EVENT_FIELDS
        assert logged(event["id"])[2] == event
    assert inserted["op"] == "INSERT" and updated["changed"] == ["description"]


def test_a_row_that_fits_is_sent_whole(inbox):
    inbox.listen("products")
    product = Product.objects.create(name="Small", sku="SMALL-1", description="ç" * 3000)
    event = json.loads(inbox.next().payload)
    assert "truncated" not in event and event["row"]["description"] == "ç" * 3000 and event["pk"] == product.pk
