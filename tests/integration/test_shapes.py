"""Every shape of watched model (docs/models.md) through the real listener (`listen_notify --json`),
with each event source: an INSERT, an UPDATE of one column, a DELETE and bulk statements of 40 rows
(with the NOTIFY source, chunk notifications expanded from the event log, each event checked
against the event log; tests/integration/test_wal_parity.py requires the same events from both sources)."""

import json
import uuid
from dataclasses import dataclass

import pytest
from django.db import connection, transaction

from tests.helpers.sources import source_env
from tests.shapes.models import BaseItem, Place, Restaurant

pytestmark = pytest.mark.django_db(transaction=True)
BULK = 40  # more than the trigger's 32: the bulk path


def execute(statement: str) -> int:
    """One statement in its own committed transaction; returns the transaction's id."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return cursor.fetchone()[0]


def logged(txid: int, channel: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload::text FROM pgnotify_event WHERE txid = %s::text::xid8 AND channel = %s "
                       "ORDER BY id", [txid, channel])
        return [json.loads(payload) for (payload,) in cursor.fetchall()]


def printed(process, channel: str) -> list[dict]:
    prefix = '{"channel":' + json.dumps(channel) + ","
    return [json.loads(line)["payload"] for line in list(process.stdout_lines) if line.startswith(prefix)]


def wait_printed(process, channel: str, count: int, timeout: float = 30.0) -> list[dict]:
    """The first `count` events the listener printed on `channel`, once it has printed them."""
    return process.wait_for(lambda lines: (events := printed(process, channel)) and len(events) >= count
                            and events[:count], timeout)


def listener_name() -> str:
    return f"shapes-{uuid.uuid4().hex[:8]}"


@dataclass
class Shape:
    channel: str
    table: str  # the event's `table`
    model: str
    insert: str
    update: str  # changes `column` of the inserted row
    delete: str
    bulk_insert: str  # BULK rows
    bulk_update: str  # changes `column` of those rows
    bulk_delete: str
    pk: object  # the inserted row's `pk`
    column: str


SHAPES = {
    "composite key": Shape(
        "shapes_composite", "shapes_compositeitem", "shapes.compositeitem",
        insert="INSERT INTO shapes_compositeitem (tenant, code, val) VALUES (1, 'one', 0)",
        update="UPDATE shapes_compositeitem SET val = 1 WHERE tenant = 1 AND code = 'one'",
        delete="DELETE FROM shapes_compositeitem WHERE tenant = 1 AND code = 'one'",
        bulk_insert=f"INSERT INTO shapes_compositeitem (tenant, code, val) SELECT 2, 'c' || i, 0 "
                    f"FROM generate_series(1, {BULK}) i",
        bulk_update="UPDATE shapes_compositeitem SET val = 7 WHERE tenant = 2",
        bulk_delete="DELETE FROM shapes_compositeitem WHERE tenant = 2",
        pk={"tenant": 1, "code": "one"}, column="val"),
    "table in another schema": Shape(
        "shapes_schema", "shapes_other.items", "shapes.schemaitem",
        insert="INSERT INTO shapes_other.items (id, name, val) VALUES (1, 'one', 0)",
        update="UPDATE shapes_other.items SET val = 1 WHERE id = 1",
        delete="DELETE FROM shapes_other.items WHERE id = 1",
        bulk_insert=f"INSERT INTO shapes_other.items (id, name, val) SELECT 100 + i, 'n', 0 "
                    f"FROM generate_series(1, {BULK}) i",
        bulk_update="UPDATE shapes_other.items SET val = 7 WHERE id > 100",
        bulk_delete="DELETE FROM shapes_other.items WHERE id > 100",
        pk=1, column="val"),
    # Written straight to its partitions (the single row to a sub-partition), in bulk through the
    # partitioned table across partitions, then straight to a partition again.
    "partitioned table": Shape(
        "shapes_reading", "shapes_reading", "shapes.reading",
        insert="INSERT INTO shapes_reading_high_b (id, sensor, val) VALUES (1600, 'one', 0)",
        update="UPDATE shapes_reading_high_b SET val = 1 WHERE id = 1600",
        delete="DELETE FROM shapes_reading_high WHERE id = 1600",
        bulk_insert=f"INSERT INTO shapes_reading (id, sensor, val) SELECT 960 + i, 'n', 0 "
                    f"FROM generate_series(1, {BULK}) i",
        bulk_update="UPDATE shapes_reading_low SET val = 7 WHERE id > 960",
        bulk_delete="DELETE FROM shapes_reading WHERE id > 960",
        pk=1600, column="val"),
    # Keyed the way PostgreSQL requires of a table partitioned on ts: the table's key is (id, ts),
    # the model's `id`. Rows are paired on (id, ts); `pk` is `id`.
    "partitioned table keyed with its partition column": Shape(
        "shapes_sample", "shapes_sample", "shapes.sample",
        insert="INSERT INTO shapes_sample (id, ts, v) VALUES (1, '2026-01-05', 0)",
        update="UPDATE shapes_sample SET v = 1 WHERE id = 1",
        delete="DELETE FROM shapes_sample_2026_01 WHERE id = 1",
        bulk_insert=f"INSERT INTO shapes_sample (id, ts, v) SELECT 100 + i, date '2026-01-15' + i, 0 "
                    f"FROM generate_series(1, {BULK}) i",  # into both partitions
        bulk_update="UPDATE shapes_sample SET v = 7 WHERE id > 100",
        bulk_delete="DELETE FROM shapes_sample WHERE id > 100",
        pk=1, column="v"),
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_each_shape_sends_every_event_right(event_source, listener, shape):
    process = listener("--name", listener_name(), env=source_env(event_source))
    single = [execute(shape.insert), execute(shape.update), execute(shape.delete)]
    bulk = [execute(shape.bulk_insert), execute(shape.bulk_update), execute(shape.bulk_delete)]
    if shape.channel == "shapes_reading":  # the bulk UPDATE went straight to a partition: 39 of the rows
        expected_bulk = [BULK, BULK - 1, BULK]
    else:
        expected_bulk = [BULK] * 3
    events = wait_printed(process, shape.channel, 3 + sum(expected_bulk))

    _, updated, deleted = events[:3]
    assert [e["op"] for e in events[:3]] == ["INSERT", "UPDATE", "DELETE"]
    assert all((e["table"], e["model"], e["pk"]) == (shape.table, shape.model, shape.pk) for e in events[:3])
    assert updated["changed"] == [shape.column] and updated["row"][shape.column] == 1
    assert deleted["row"] == updated["row"]
    assert [e["txid"] for e in events[:3]] == single
    if event_source == "notify":
        assert [[e] for e in events[:3]] == [logged(txid, shape.channel) for txid in single]

    rest = events[3:]
    for txid, count, op in zip(bulk, expected_bulk, ["INSERT", "UPDATE", "DELETE"], strict=True):
        these, rest = rest[:count], rest[count:]
        assert len(these) == count and (event_source == "wal" or these == logged(txid, shape.channel))
        assert all(e["op"] == op and e["table"] == shape.table and e["txid"] == txid for e in these)
        if op == "UPDATE":
            assert all(e["changed"] == [shape.column] and e["row"][shape.column] == 7 for e in these)
    assert rest == []


def test_a_row_of_a_partitioned_table_keyed_with_its_partition_column_moved_or_rekeyed(event_source, listener):
    process = listener("--name", listener_name(), env=source_env(event_source))
    execute("INSERT INTO shapes_sample (id, ts, v) VALUES (5, '2026-01-30', 0)")
    rekeyed = execute("UPDATE shapes_sample SET ts = '2026-01-31' WHERE id = 5")  # within its partition
    moved = execute("UPDATE shapes_sample SET ts = '2026-02-01' WHERE id = 5")  # into the next partition
    execute("DELETE FROM shapes_sample WHERE id = 5")
    count = 4 if event_source == "notify" else 5
    events = wait_printed(process, "shapes_sample", count)
    assert {(e["table"], e["model"], e["pk"]) for e in events} == {("shapes_sample", "shapes.sample", 5)}
    assert [(e["op"], e["row"]["ts"]) for e in events if e["txid"] == moved] == (
        # The WAL holds a row moved between partitions as its DELETE and its INSERT (docs/sources.md).
        [("DELETE", "2026-01-31"), ("INSERT", "2026-02-01")] if event_source == "wal"
        else [("UPDATE", "2026-02-01")])
    (update,) = [e for e in events if e["txid"] == rekeyed]
    # A changed `ts` changes the table's key, which both sources pair rows on: every column is changed.
    assert update["changed"] == ["id", "ts", "v"]
    assert (events[0]["op"], events[-1]["op"]) == ("INSERT", "DELETE")

    # The table's key allows one `id` in two months: one UPDATE of both is two events, each its own row's.
    key = 7 if event_source == "notify" else 8  # the table is not emptied between tests
    execute(f"INSERT INTO shapes_sample (id, ts, v) VALUES ({key}, '2026-01-10', 0), ({key}, '2026-02-10', 0)")
    both = execute(f"UPDATE shapes_sample SET v = 1 WHERE id = {key}")
    events = [e for e in wait_printed(process, "shapes_sample", count + 4) if e["txid"] == both]
    assert sorted((e["op"], e["row"]["ts"], e["changed"]) for e in events) == [
        ("UPDATE", "2026-01-10", ["v"]), ("UPDATE", "2026-02-10", ["v"])]


def test_a_model_and_its_proxy_each_get_their_events(event_source, listener):
    process = listener("--name", listener_name(), env=source_env(event_source))
    item = BaseItem.objects.create(name="one", secret="s1")
    item_pk = item.pk
    BaseItem.objects.filter(pk=item.pk).update(val=1)
    BaseItem.objects.filter(pk=item.pk).update(secret="s2")  # excluded for the proxy only
    item.delete()
    execute(f"INSERT INTO shapes_baseitem (name, val, secret) SELECT 'n', 0, 's' FROM generate_series(1, {BULK})")
    execute("UPDATE shapes_baseitem SET val = 7")

    base = wait_printed(process, "shapes_base", 4 + 2 * BULK)
    proxy = wait_printed(process, "shapes_proxy", 3 + 2 * BULK)
    assert {e["model"] for e in base} == {"shapes.baseitem"} and {e["model"] for e in proxy} == {"shapes.proxyitem"}
    assert {e["table"] for e in base + proxy} == {"shapes_baseitem"}
    assert [(e["op"], e.get("changed")) for e in base[:4]] == [
        ("INSERT", None), ("UPDATE", ["val"]), ("UPDATE", ["secret"]), ("DELETE", None)]
    # The proxy never sees `secret`: no event when only it changed, and no value in any row.
    assert [(e["op"], e.get("changed")) for e in proxy[:3]] == [("INSERT", None), ("UPDATE", ["val"]),
                                                                ("DELETE", None)]
    assert all("secret" not in e["row"] for e in proxy) and all("secret" in e["row"] for e in base)
    assert {e["pk"] for e in base[:4]} == {e["pk"] for e in proxy[:3]} == {item_pk}
    # Each channel gets the bulk statements' events too, from chunks of its own.
    assert [e["op"] for e in base[4:]] == [e["op"] for e in proxy[3:]] == ["INSERT"] * BULK + ["UPDATE"] * BULK
    assert {e["txid"] for e in base[4:]} == {e["txid"] for e in proxy[3:]}


def test_multi_table_inheritance_parent_fields_on_the_parents_channel(event_source, listener):
    process = listener("--name", listener_name(), env=source_env(event_source))
    restaurant = Restaurant.objects.create(name="Chez Nous", city="Lyon", seats=20)
    restaurant_pk = restaurant.pk
    restaurant.seats = 30
    restaurant.save()  # the child's own field: the parent's row is saved unchanged, no event for it
    restaurant.name = "Chez Vous"
    restaurant.save()  # an inherited field: the parent's table alone changes
    restaurant.delete()
    execute(f"INSERT INTO shapes_place (name, city) SELECT 'p' || i, '' FROM generate_series(1, {BULK}) i")
    execute("INSERT INTO shapes_restaurant (place_ptr_id, seats) SELECT id, 0 FROM shapes_place WHERE name LIKE 'p%%'")
    execute("UPDATE shapes_restaurant SET seats = 5")

    child = wait_printed(process, "shapes_restaurant", 3 + 2 * BULK)
    parent = wait_printed(process, "shapes_place", 3 + BULK)
    assert [(e["op"], e.get("changed")) for e in child[:3]] == [("INSERT", None), ("UPDATE", ["seats"]),
                                                                ("DELETE", None)]
    assert [(e["op"], e.get("changed")) for e in parent[:3]] == [("INSERT", None), ("UPDATE", ["name"]),
                                                                 ("DELETE", None)]
    assert {e["pk"] for e in child[:3] + parent[:3]} == {restaurant_pk}
    assert parent[0]["txid"] == child[0]["txid"] and parent[1]["row"]["name"] == "Chez Vous"
    assert set(child[0]["row"]) == {"place_ptr_id", "seats"}
    assert [e["op"] for e in child[3:]] == ["INSERT"] * BULK + ["UPDATE"] * BULK
    assert all(e["changed"] == ["seats"] for e in child[3 + BULK:])
    # No event ever says nothing changed.
    assert all(e["changed"] for e in printed(process, "shapes_restaurant") + printed(process, "shapes_place")
               if e["op"] == "UPDATE")


def test_an_update_that_changes_nothing_sends_no_event_but_invalidates_caches(event_source, listener):
    execute("DELETE FROM shapes_reading")  # an unmanaged table: the test database's flush leaves its rows
    process = listener("--name", listener_name(), env=source_env(event_source))
    place = Place.objects.create(name="same", city="Lyon")
    execute(f"INSERT INTO shapes_place (name, city) SELECT 'p' || i, 'Lyon' FROM generate_series(1, {BULK}) i")
    execute("INSERT INTO shapes_reading (id, sensor, val) VALUES (1, 'a', 0), (1500, 'b', 0)")
    wait_printed(process, "shapes_place", 1 + BULK)
    wait_printed(process, "shapes_reading", 2)

    place.save()  # an admin save that changes nothing: an UPDATE of every column to its own value
    noop = execute("UPDATE shapes_reading SET val = val")  # `SET status = status`
    noop_bulk = execute("UPDATE shapes_place SET city = city")  # 41 rows: the bulk path
    # Then a real change on each channel: were there an event for a no-op, it would come before.
    Place.objects.filter(pk=place.pk).update(city="Paris")
    execute("UPDATE shapes_reading SET val = 1 WHERE id = 1")

    assert wait_printed(process, "shapes_place", 2 + BULK)[-1]["changed"] == ["city"]
    assert wait_printed(process, "shapes_reading", 3)[-1]["changed"] == ["val"]
    assert logged(noop, "shapes_reading") == [] and logged(noop_bulk, "shapes_place") == []
    # The cache still hears of every write statement, the one that changed nothing included.
    invalidations = process.wait_for(
        lambda lines: len(found := [p for p in printed(process, "cache_invalidate") if p.get("tags") == ["readings"]])
        >= 3 and found)
    assert [p["op"] for p in invalidations[:3]] == ["INSERT", "UPDATE", "UPDATE"]
