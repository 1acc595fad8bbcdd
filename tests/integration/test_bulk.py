"""Bulk statements (statement-level triggers with transition tables): one INSERT ... SELECT into
the event log and a few chunk notifications, expanded by the listener into the same events a
single-row statement sends."""

import json
import uuid

import psycopg
import pytest
from django.db import connection

from notifyproject.shop.demo import Inbox
from pgnotify.connection import listener_conninfo
from tests.helpers.support import start_listener

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = 10_000


def execute(statement: str, params=()) -> int:
    """Run one autocommit statement; returns its transaction id."""
    with psycopg.connect(autocommit=False, **listener_conninfo()) as conn:
        conn.execute(statement, params)
        txid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
        conn.commit()
    return txid


def logged_events(txid: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload::text FROM pgnotify_event WHERE txid = %s::text::xid8 ORDER BY id", [txid])
        return [json.loads(payload) for (payload,) in cursor.fetchall()]


class UpdateIds:
    """A wait_for predicate collecting the ids of UPDATE events printed, reading each line once."""

    def __init__(self, until):
        self.until, self.seen, self.ids = until, 0, []

    def __call__(self, lines):
        for line in lines[self.seen:]:
            if '"op":"UPDATE"' in line:
                self.ids.append(json.loads(line)["payload"]["id"])
        self.seen = len(lines)
        return self.until(self.ids)


def orders_events(process) -> list[dict]:
    return [j["payload"] for j in process.json_lines() if j["channel"] == "orders"]


def test_bulk_update_delivers_every_event_whole(listener):
    execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, %s)", [ROWS])
    process = listener("--name", f"bulk-{uuid.uuid4().hex[:8]}")
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        inbox = Inbox(conn, "bulk", timeout=5.0)
        inbox.listen("orders")
        single_txid = execute("UPDATE shop_order SET status = 'paid' WHERE id = (SELECT min(id) FROM shop_order)")
        bulk_txid = execute("UPDATE shop_order SET quantity = quantity + 1, total = 5")
        raw = inbox.rest()

    process.wait_for(UpdateIds(lambda ids: len(ids) >= ROWS + 1), timeout=30)
    single, *bulk = [e for e in orders_events(process) if e["op"] == "UPDATE"]
    assert len(bulk) == ROWS and len({e["id"] for e in bulk}) == ROWS
    # The single-row statement sent its event itself; the bulk one a chunk per 1,000 events.
    assert json.loads(raw[0].payload) == single and single["txid"] == single_txid
    chunks = [json.loads(n.payload) for n in raw[1:]]
    assert len(chunks) == ROWS // 1000 and all(set(c) == {"chunk", "txid", "table", "op"} for c in chunks)
    # Same shape as a single-row event, identical to the log, in id order.
    assert all(set(e) == set(single) for e in bulk)
    assert bulk == logged_events(bulk_txid)
    assert [e["id"] for e in bulk] == sorted(e["id"] for e in bulk)
    assert {e["pk"] for e in bulk} == {e["row"]["id"] for e in bulk} and len({e["pk"] for e in bulk}) == ROWS
    assert all(e["changed"] == ["quantity", "total"] and e["row"]["quantity"] == 2 for e in bulk)
    assert all(e["txid"] == bulk_txid and e["table"] == "shop_order" and e["model"] == "shop.order" for e in bulk)


def test_bulk_excluded_columns_never_appear():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_user (username, password, first_name, last_name, email, is_staff, "
                       "is_active, is_superuser, date_joined) SELECT 'bulk' || i, 'secret-hash-' || i, '', '', "
                       "'', false, true, false, now() FROM generate_series(1, 50) i")
    password_only = execute("UPDATE auth_user SET password = password || '-2' WHERE username LIKE 'bulk%%'")
    assert logged_events(password_only) == []  # only an excluded column changed: no event
    both = execute("UPDATE auth_user SET password = password || '-3', last_name = 'Bulk' WHERE username LIKE 'bulk%%'")
    events = logged_events(both)
    assert len(events) == 50 and all(e["changed"] == ["last_name"] for e in events)
    deleted = execute("DELETE FROM auth_user WHERE username LIKE 'bulk%%'")
    assert [e["op"] for e in logged_events(deleted)] == ["DELETE"] * 50
    text = json.dumps(events + logged_events(deleted))
    assert "secret-hash" not in text and '"password"' not in text


def test_listener_killed_during_a_bulk_statement_loses_nothing(listener):
    name = f"bulk-kill-{uuid.uuid4().hex[:8]}"
    execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, %s)", [ROWS])
    first = listener("--name", name)
    txid = execute("UPDATE shop_order SET quantity = quantity + 1")
    first.wait_for(UpdateIds(lambda ids: len(ids) >= 100), timeout=30)
    first.kill()  # SIGKILL while the chunks are being handed on
    before = [e for e in orders_events(first) if e["op"] == "UPDATE"]
    assert len(before) < ROWS, "the listener handed on everything before it was killed"

    second = start_listener("--name", name)
    expected = {e["id"] for e in logged_events(txid)}
    got = {e["id"] for e in before}
    collected = UpdateIds(lambda ids: got | set(ids) >= expected)
    second.wait_for(collected, timeout=30)
    second.stop()
    assert len(expected) == ROWS and got | set(collected.ids) == expected
    assert len(collected.ids) == len(set(collected.ids))  # none twice within one process


@pytest.mark.parametrize("op", ["INSERT", "UPDATE", "DELETE"])
def test_a_statement_of_32_rows_notifies_each_event_and_one_of_33_sends_a_chunk(op):
    execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, 65)")
    statements = {
        "INSERT": "INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {n})",
        "UPDATE": "UPDATE shop_order SET quantity = quantity + 1 WHERE id IN (SELECT id FROM shop_order "
                  "ORDER BY id LIMIT {n} OFFSET {offset})",
        "DELETE": "DELETE FROM shop_order WHERE id IN (SELECT id FROM shop_order ORDER BY id DESC LIMIT {n})",
    }
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        inbox = Inbox(conn, "edge", timeout=5.0)
        inbox.listen("orders")
        each_txid = execute(statements[op].format(n=32, offset=0))
        chunk_txid = execute(statements[op].format(n=33, offset=32))
        raw = [json.loads(n.payload) for n in inbox.rest()]

    each, chunk = raw[:32], raw[32:]
    assert each == logged_events(each_txid), "32 events, each notified whole, in id order"
    assert all(e["op"] == op for e in each)
    logged = logged_events(chunk_txid)
    assert len(logged) == 33
    assert chunk == [{"chunk": [logged[0]["id"], logged[-1]["id"]], "txid": chunk_txid, "table": "shop_order",
                      "op": op}]


def test_a_bulk_statement_leaves_the_transaction_settings_as_they_were():
    execute("INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, 100)")
    settings = "SELECT current_setting('jit'), current_setting('work_mem'), current_setting('enable_mergejoin')"
    with psycopg.connect(autocommit=False, **listener_conninfo()) as conn:
        conn.execute("SET LOCAL work_mem = '3MB'")
        before = conn.execute(settings).fetchone()
        conn.execute("UPDATE shop_order SET quantity = quantity + 1")  # 100 rows: the bulk path
        assert conn.execute(settings).fetchone() == before
        conn.rollback()
