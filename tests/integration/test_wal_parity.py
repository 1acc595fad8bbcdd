"""Both sources make the same events. The NOTIFY source's triggers and the WAL source's
publication are on the same tables at once, the same changes are written once, and the event
log's events (what the NOTIFY source hands on) and the WAL listener's must be equal, digit for
digit and key for key, but for `id` and `ts` (the trigger's clock against the commit's):

* one table with a column of every type the WAL source renders;
* every model of the test app `tests/shapes` (docs/models.md): a composite key, a table in
  another schema, a model and its proxy, a partitioned table written through its partitions,
  a partitioned table keyed with its partition column (its model keyed on id), multi-table
  inheritance, exact numbers and durations; each with an INSERT, an UPDATE of one
  column, an UPDATE that changes nothing (no event from either), a DELETE and bulk statements.
"""

import asyncio
import dataclasses
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from django.apps import apps
from django.db import connection
from psycopg import sql

from pgnotify.connection import listener_conninfo
from pgnotify.listener import ListenerOptions, Notification, exactjson
from pgnotify.listener.wal import WalListener, WalTable, WalTarget
from pgnotify.schema.publication import sync_publication
from pgnotify.schema.table_function import create_function, function_name
from pgnotify.schema.tables import TableName, fetch_table_facts
from pgnotify.schema.triggers import sync_triggers
from pgnotify.schema.watched import Target, WatchedTable
from pgnotify.sources import make_listener
from tests.helpers.faults import RecordingSink
from tests.helpers.sources import drop_database_slots
from tests.settings import SHAPES_WATCH
from tests.shapes.models import Place, Restaurant

pytestmark = pytest.mark.django_db(transaction=True)

TABLE, CHANNEL, PUBLICATION = "parity_types", "parity", "pgnotify_parity"
# Every column type the WAL source renders, as to_jsonb does (name, type).
COLUMNS = [
    ("small", "smallint"), ("normal", "integer"), ("big", "bigint"), ("exact", "numeric(30,10)"),
    ("plain", "numeric"), ("real4", "real"), ("double8", "double precision"), ("flag", "boolean"),
    ("label", "text"), ("code", "varchar(20)"), ("letter", "char(3)"), ("day", "date"), ("clock", "time"),
    ("clock_tz", "timetz"), ("moment", "timestamp"), ("instant", "timestamptz"), ("span", "interval"),
    ("ident", "uuid"), ("doc", "json"), ("docb", "jsonb"), ("ints", "integer[]"), ("texts", "text[]"),
    ("grid", "integer[][]"), ("stamps", "timestamptz[]"), ("nums", "numeric[]"), ("docs", "jsonb[]"),
    ("blob", "bytea"), ("mood", "parity_mood"), ("moods", "parity_mood[]"), ("positive", "parity_positive"),
    ("addr", "inet"), ("cash", "money"), ("big_text", "text"), ("secret", "text"),
]
TYPES = [sql_type for _, sql_type in COLUMNS]

SETUP = f"""
    DROP TABLE IF EXISTS {TABLE}; DROP TYPE IF EXISTS parity_mood; DROP DOMAIN IF EXISTS parity_positive;
    DROP PUBLICATION IF EXISTS {PUBLICATION};
    CREATE TYPE parity_mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN parity_positive AS numeric CHECK (VALUE > 0);
    CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, {", ".join(f"{name} {sql_type}" for name, sql_type in COLUMNS)});
    ALTER TABLE {TABLE} ALTER big_text SET STORAGE EXTERNAL;  -- TOASTed out of line, uncompressed
    ALTER TABLE {TABLE} REPLICA IDENTITY FULL;
    CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE};
"""
# The change trigger as `migrate` attaches it (pgnotify.schema.triggers): key, table, ISO 8601 durations
# (the table has interval columns) and json (a json column), the pairing key, then the one target.
ARGUMENTS = f"'{{id}}', '{TABLE}', 'iso_intervals,json', '{{id}}', '{CHANNEL}', 'tests.parity', '{{secret}}'"
TRIGGERS = f"""
    CREATE TRIGGER pgnotify_change AFTER UPDATE ON {TABLE} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_log_changes({ARGUMENTS});
    CREATE TRIGGER pgnotify_change_insert AFTER INSERT ON {TABLE} REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_log_changes({ARGUMENTS});
    CREATE TRIGGER pgnotify_change_delete AFTER DELETE ON {TABLE} REFERENCING OLD TABLE AS old_rows
      FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_log_changes({ARGUMENTS});
"""

TYPICAL = """
    INSERT INTO parity_types (small, normal, big, exact, plain, real4, double8, flag, label, code, letter, day,
        clock, clock_tz, moment, instant, span, ident, doc, docb, ints, texts, grid, stamps, nums, docs, blob,
        mood, moods, positive, addr, cash, big_text, secret)
    VALUES (7, -42, 9007199254740993, 99.9000000000, 123456789012345678901234567890.123456789, 1.5, 0.1, true,
        'Grüße "quoted" \\ back', 'code', 'ab', '2026-11-27', '10:00:00.5', '10:00:00+02',
        '2026-11-27 10:00:00.123456', '2026-11-27 10:00:00.1234+05:30', '1 day 02:03:04.5', %(uuid)s,
        '{"b": 1, "a": [1, 2.50, "x"]}', '{"b": 1, "a": [1, 2.50, "x"]}', '{1,2,3}', '{"a b","c\\"d",NULL,"NULL"}',
        '{{1,2},{3,NULL}}', '{"2026-01-01 00:00:00+00","2026-06-01 12:30:00+02"}', '{1.10,NaN,-3}',
        ARRAY['{"k": [1, {"z": null}]}'::jsonb, 'null'::jsonb], '\\x00ff10', 'happy', '{sad,ok}', 42.5,
        '192.168.0.1/24', 12.34, 'short', 'hidden-1')
"""
EDGES = """
    INSERT INTO parity_types (small, normal, big, exact, plain, real4, double8, flag, label, day, clock, moment,
        instant, span, doc, docb, ints, grid, nums, blob, moods, big_text, secret)
    VALUES (-32768, 2147483646, -9223372036854775808, -0.0000000001, 'NaN', '-Infinity', 1e300, false, '',
        '0044-03-15 BC', '24:00:00', 'infinity', '-infinity', '-1 year -2 mons +3 days -04:05:06',
        '{"a": 1, "a": 2, "n": 1.0e2, "e": 1E-7, "big": 123456789012345678901234567890}', '[]', '{}',
        '[0:1][1:2]={{1,2},{3,4}}', '{}', '\\x', '{}', repeat('x', 20000), 'hidden-2')
"""
ALL_NULL = "INSERT INTO parity_types DEFAULT VALUES"
FLOATS = """
    INSERT INTO parity_types (real4, double8, plain, big_text, secret)
    VALUES ('NaN', '-0', 1e-5, repeat(md5('a'), 700), 'hidden-3'), ('Infinity', 1.5e-7, 100, NULL, NULL),
           (3.25, 100, 0.50, 'z', NULL)
"""
CHANGES = [
    TYPICAL, EDGES, ALL_NULL, FLOATS,
    # An UPDATE that leaves the TOASTed value as it was: the new row lacks it, the old row has it.
    "UPDATE parity_types SET label = 'renamed' WHERE big_text = repeat('x', 20000)",
    # Values jsonb holds equal (numeric 99.9 and 99.90) are not changed; the date is.
    "UPDATE parity_types SET exact = 99.9, day = '2026-11-28' WHERE small = 7",
    "UPDATE parity_types SET secret = 'hidden-4' WHERE small = 7",  # only an excluded column: no event
    "UPDATE parity_types SET label = label WHERE small = 7",  # nothing changed: no event
    "UPDATE parity_types SET id = id + 1000 WHERE small = -32768",  # a new key: every column changed
    # Numbers jsonb holds equal (0.50 and 0.5000, -0 and 0) in one statement of every row: no event.
    "UPDATE parity_types SET plain = plain * 1.00, double8 = double8 + 0, real4 = real4 + 0",
    "UPDATE parity_types SET normal = coalesce(normal, 0) + 1",  # one statement, every row
    "COPY parity_types (label, nums) FROM STDIN",
    "DELETE FROM parity_types WHERE big_text IS NOT NULL",
    "INSERT INTO parity_types (label) SELECT 'bulk-' || n FROM generate_series(1, 40) AS n",  # the bulk path
    "DELETE FROM parity_types",
]
COPY_ROWS = ["one\t{1,2}", "two\t\\N", "three\t{}"]


def write_changes(conninfo: dict) -> None:
    with psycopg.connect(autocommit=True, options="-c TimeZone=UTC", **conninfo) as conn:
        for statement in CHANGES:
            if statement.startswith("COPY"):
                with conn.cursor().copy(statement) as copy:
                    for line in COPY_ROWS:
                        copy.write(line + "\n")
            else:
                conn.execute(statement, {"uuid": uuid.UUID("12345678-1234-5678-1234-567812345678")})


def logged_events(conninfo: dict, channels, after: int = 0) -> list[dict]:
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        rows = conn.execute("SELECT channel, payload::text FROM pgnotify_event WHERE channel = ANY(%s) AND id > %s "
                            "ORDER BY id", [list(channels), after]).fetchall()
    return [Notification(channel, payload).event for channel, payload in rows]


def last_event_id(conninfo: dict) -> int:
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM pgnotify_event").fetchone()[0]


def comparable(event: dict) -> str:
    """The event but `id` and `ts`, as exact JSON text: every digit and every key's place counts."""
    return exactjson.dumps({key: value for key, value in event.items() if key not in {"id", "ts"}})


def differences(wal: dict, notify: dict) -> dict:
    """Fields (and row columns) whose values differ: (WAL's, NOTIFY's)."""
    def text(value) -> str:
        return exactjson.dumps(value)

    out = {key: (wal.get(key), notify.get(key)) for key in (wal.keys() | notify.keys()) - {"id", "ts", "row"}
           if text(wal.get(key)) != text(notify.get(key))}
    rows = wal.get("row", {}), notify.get("row", {})
    out.update({f"row.{key}": (rows[0].get(key, "<absent>"), rows[1].get(key, "<absent>"))
                for key in rows[0].keys() | rows[1].keys()
                if text(rows[0].get(key, "<absent>")) != text(rows[1].get(key, "<absent>"))})
    if not out and list(wal.get("row", {})) != list(notify.get("row", {})):
        out["row keys"] = (list(wal["row"]), list(notify["row"]))
    return out


def assert_same_events(decoded: list[dict], expected: list[dict]) -> None:
    """The same events, as many of each, whatever their order (the trigger logs one target's events
    after the other's; the WAL source makes every target's event of a change at once)."""
    assert len(decoded) == len(expected)
    pairs = zip(sorted(decoded, key=comparable), sorted(expected, key=comparable), strict=True)
    for wal, notify in pairs:
        assert differences(wal, notify) == {}, (wal, notify)
        assert comparable(wal) == comparable(notify)
        assert abs(datetime.fromisoformat(wal["ts"]) - datetime.fromisoformat(notify["ts"])) < timedelta(seconds=5)
        assert wal["ts"].endswith("+00:00")
    ids = [event["id"] for event in decoded]
    assert len(set(ids)) == len(ids) and all(0 < i < 2**53 for i in ids)


def own_function_triggers(json_as_jsonb: bool) -> tuple[str, str]:
    """TRIGGERS with the table's own change function, as `migrate` makes it (pgnotify.schema.
    table_function). json_as_jsonb: made as for a table without a json column (its values here
    are all ones jsonb takes), so that an UPDATE of several rows takes the table's own statement,
    which compares old and new rows column by column, by value where that says what JSON says."""
    table = WatchedTable(TableName("", TABLE), ("id",), targets=[Target(CHANNEL, "tests.parity", ("secret",))])
    with connection.cursor() as cursor:
        facts = fetch_table_facts(cursor, [table.name])[table.name]
        assert facts is not None and facts.has_json
        if json_as_jsonb:
            facts = dataclasses.replace(facts, has_json=False)
        function = create_function(table, facts).as_string(cursor.connection)
    name = function_name(table, facts)
    return function + ";" + TRIGGERS.replace("pgnotify_log_changes(", name + "("), name


@pytest.mark.parametrize("function", ["shared", "own", "own, json as jsonb"])
async def test_both_sources_make_the_same_events_for_every_column_type(function):
    conninfo = listener_conninfo()
    own = None
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        conn.execute(SETUP)
        if function == "shared":
            conn.execute(TRIGGERS)
        else:
            triggers, own = await asyncio.to_thread(own_function_triggers, function == "own, json as jsonb")
            conn.execute(triggers)
    sink, stop = RecordingSink(), asyncio.Event()
    table = WalTable(TABLE, targets=(WalTarget(CHANNEL, "tests.parity", frozenset({"secret"})),))
    name = f"parity-{uuid.uuid4().hex[:8]}"
    listener = WalListener(conninfo, ListenerOptions(channels=["system"], name=name), sink, [table],
                           publication=PUBLICATION)
    task = asyncio.create_task(listener.run(stop))
    try:
        await sink.wait_for(lambda: "live" in sink.states(), within=20)
        await asyncio.to_thread(write_changes, conninfo)
        expected = logged_events(conninfo, [CHANNEL])
        await sink.wait_for(lambda: len(sink.events()) >= len(expected), within=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        with psycopg.connect(autocommit=True, **conninfo) as conn:
            conn.execute(f"DROP PUBLICATION {PUBLICATION}; DROP TABLE {TABLE}; DROP TYPE parity_mood; "
                         "DROP DOMAIN parity_positive")
            if own:
                conn.execute(sql.SQL("DROP FUNCTION {}()").format(sql.Identifier(own)))
        drop_database_slots(conninfo["dbname"])
    decoded = [notification.event for notification in sink.events()]
    # 6 + 3 + 40 inserted; 9 updated (3 single, 6 in one statement: no event for the three UPDATEs
    # that changed no visible column); 49 deleted.
    assert len(expected) == 107
    assert_same_events(decoded, expected)
    updates = [event for event in decoded if event["op"] == "UPDATE"]
    renamed = next(event for event in updates if event["row"]["label"] == "renamed")
    assert renamed["changed"] == ["label"] and renamed["row"]["big_text"] == "x" * 20000  # from the old row
    assert all(event["changed"] for event in updates)
    assert {"day"} <= {name for event in updates for name in event["changed"]}
    typical = next(event for event in decoded if event["op"] == "INSERT" and event["row"]["small"] == 7)["row"]
    assert typical["span"] == "P1DT2H3M4.5S"  # ISO 8601, as the trigger renders it
    assert str(typical["plain"]) == "123456789012345678901234567890.123456789" and typical["big"] == 9007199254740993
    text = exactjson.dumps(decoded)
    assert "hidden-" not in text and '"secret"' not in text


# -- every shape of model (tests/shapes), both sources at once

BULK = 40  # more than the trigger's 32 rows: its bulk path

SHAPE_CHANGES = [
    # A composite key: the key is an object; a changed key makes every column changed.
    "INSERT INTO shapes_compositeitem (tenant, code, val) VALUES (1, 'one', 0)",
    "UPDATE shapes_compositeitem SET val = 1 WHERE tenant = 1 AND code = 'one'",
    "UPDATE shapes_compositeitem SET val = val WHERE tenant = 1",
    "UPDATE shapes_compositeitem SET code = 'uno' WHERE tenant = 1",
    "DELETE FROM shapes_compositeitem WHERE tenant = 1",
    f"INSERT INTO shapes_compositeitem (tenant, code, val) SELECT 2, 'c' || i, i FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_compositeitem SET val = val + 1 WHERE tenant = 2",
    "UPDATE shapes_compositeitem SET val = val WHERE tenant = 2",
    "DELETE FROM shapes_compositeitem WHERE tenant = 2",
    # A table in a schema off the search path: `table` carries the schema.
    "INSERT INTO shapes_other.items (id, name, val) VALUES (1, 'one', 0)",
    "UPDATE shapes_other.items SET val = 1 WHERE id = 1",
    "UPDATE shapes_other.items SET name = name WHERE id = 1",
    "DELETE FROM shapes_other.items WHERE id = 1",
    f"INSERT INTO shapes_other.items (id, name, val) SELECT 100 + i, 'n', 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_other.items SET val = 7 WHERE id > 100",
    "DELETE FROM shapes_other.items WHERE id > 100",
    # A model and its proxy: an event for each; the proxy does not see `secret`, nor its change.
    "INSERT INTO shapes_baseitem (id, name, val, secret) VALUES (1, 'one', 0, 's1')",
    "UPDATE shapes_baseitem SET val = 1 WHERE id = 1",
    "UPDATE shapes_baseitem SET secret = 's2' WHERE id = 1",
    "UPDATE shapes_baseitem SET val = val, secret = secret WHERE id = 1",
    "DELETE FROM shapes_baseitem WHERE id = 1",
    f"INSERT INTO shapes_baseitem (id, name, val, secret) SELECT 100 + i, 'n', 0, 's' "
    f"FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_baseitem SET val = 7, secret = 't' WHERE id > 100",
    "UPDATE shapes_baseitem SET secret = 'u' WHERE id > 100",
    "DELETE FROM shapes_baseitem WHERE id > 100",
    # A partitioned table, written through its partitions and through itself: `table` is the parent.
    "INSERT INTO shapes_reading_high_b (id, sensor, val) VALUES (1600, 'one', 0)",
    "UPDATE shapes_reading_high_b SET val = 1 WHERE id = 1600",
    "UPDATE shapes_reading_high SET val = val WHERE id = 1600",
    "DELETE FROM shapes_reading_high WHERE id = 1600",
    f"INSERT INTO shapes_reading (id, sensor, val) SELECT 960 + i, 'n', 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_reading_low SET val = 7 WHERE id > 960",  # 39 of the rows
    "UPDATE shapes_reading SET sensor = 'm'",
    "DELETE FROM shapes_reading WHERE id > 960",
    # A partitioned table keyed (id, ts), as PostgreSQL requires, its model keyed on id: `pk` is id.
    "INSERT INTO shapes_sample (id, ts, v) VALUES (1, '2026-01-05', 0)",
    "UPDATE shapes_sample_2026_01 SET v = 1 WHERE id = 1",
    "UPDATE shapes_sample SET v = v WHERE id = 1",
    "DELETE FROM shapes_sample WHERE id = 1",
    f"INSERT INTO shapes_sample (id, ts, v) SELECT 100 + i, date '2026-01-15' + i, 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_sample SET v = 7 WHERE id > 100",
    "UPDATE shapes_sample SET v = v WHERE id > 100",
    "DELETE FROM shapes_sample WHERE id > 100",
    # Exact numbers (beyond a double, beyond 64 bits) and durations, whatever the writer's IntervalStyle.
    "SET intervalstyle = postgres_verbose",
    "INSERT INTO shapes_amount (id, amount, data, duration) VALUES (1, 12345678901234567890123456789012345678.12, "
    "'{\"big\": 36893488147419103233, \"tenth\": 0.10, \"e\": 1.5e-7, \"f\": 2.5E+3}', "
    "'1 day 02:03:04.5')",
    "UPDATE shapes_amount SET amount = -0.01 WHERE id = 1",
    "UPDATE shapes_amount SET data = '{\"e\": 1.5e-7, \"tenth\": 0.1, \"f\": 2500, \"big\": 36893488147419103233}' "
    "WHERE id = 1",  # jsonb-equal to what it was: no event
    "UPDATE shapes_amount SET duration = '-1 month 3 days' WHERE id = 1",
    "DELETE FROM shapes_amount WHERE id = 1",
    f"INSERT INTO shapes_amount (id, amount, data, duration) SELECT 100 + i, i / 3.0, jsonb_build_object('i', i), "
    f"make_interval(secs => i / 7.0) FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_amount SET amount = amount * 1.00 WHERE id > 100",  # numeric-equal: no event
    "UPDATE shapes_amount SET duration = duration * 2 WHERE id > 100",
    "DELETE FROM shapes_amount WHERE id > 100",
    "RESET intervalstyle",
    # Multi-table inheritance in bulk: each table its own events.
    f"INSERT INTO shapes_place (id, name, city) SELECT 100 + i, 'p' || i, '' FROM generate_series(1, {BULK}) i",
    "INSERT INTO shapes_restaurant (place_ptr_id, seats) SELECT id, 0 FROM shapes_place WHERE id > 100",
    "UPDATE shapes_restaurant SET seats = 5 WHERE place_ptr_id > 100",
    "UPDATE shapes_place SET city = 'Lyon' WHERE id > 100",
    "UPDATE shapes_restaurant SET seats = seats WHERE place_ptr_id > 100",
    "DELETE FROM shapes_restaurant WHERE place_ptr_id > 100",
    "DELETE FROM shapes_place WHERE id > 100",
]


def empty_unmanaged_tables(conninfo: dict) -> None:
    models = [apps.get_model(label) for label in SHAPES_WATCH]
    tables = sorted({model._meta.db_table for model in models if not model._meta.managed})
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        for table in tables:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


def write_shape_changes(conninfo: dict) -> None:
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        for statement in SHAPE_CHANGES:
            conn.execute(statement)
    # Multi-table inheritance as Django writes it: a save writes both tables.
    try:
        restaurant = Restaurant.objects.create(name="Chez Nous", city="Lyon", seats=20)
        restaurant.seats = 30
        restaurant.save()  # the child's field: the parent's row is saved unchanged
        restaurant.name = "Chez Vous"
        restaurant.save()  # an inherited field: the child's row is saved unchanged
        restaurant.save()  # nothing changed
        Place.objects.filter(pk=restaurant.pk).update(city="Paris")
        restaurant.delete()
    finally:
        connection.close()  # this thread's: the test database is dropped at the end


@pytest.fixture
def both_sources(settings):
    """The triggers (NOTIFY source) and the publication (WAL source) on the watched tables at once."""
    original = settings.PGNOTIFY
    assert not sync_triggers().problems
    settings.PGNOTIFY = {**original, "SOURCE": "wal"}
    assert not sync_publication().problems
    try:
        yield
    finally:
        settings.PGNOTIFY = original
        sync_publication()  # dropped, and the replica identities back to DEFAULT
        drop_database_slots(listener_conninfo()["dbname"])


async def test_both_sources_make_the_same_events_for_every_shape(both_sources):
    conninfo = listener_conninfo()
    channels = sorted({options["channel"] for options in SHAPES_WATCH.values()})
    # Unmanaged tables are not flushed between tests: start them empty, so counts below are this test's.
    await asyncio.to_thread(empty_unmanaged_tables, conninfo)
    sink, stop = RecordingSink(), asyncio.Event()
    listener = make_listener(conninfo, ListenerOptions(channels=["system"], name=f"shapes-{uuid.uuid4().hex[:8]}"),
                             sink)
    assert isinstance(listener, WalListener)
    task = asyncio.create_task(listener.run(stop))
    try:
        await sink.wait_for(lambda: "live" in sink.states(), within=20)
        after = await asyncio.to_thread(last_event_id, conninfo)
        await asyncio.to_thread(write_shape_changes, conninfo)
        expected = await asyncio.to_thread(logged_events, conninfo, channels, after)
        await sink.wait_for(lambda: len([n for n in sink.events() if n.channel in channels]) >= len(expected),
                            within=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    decoded = [notification.event for notification in sink.events() if notification.channel in channels]
    assert_same_events(decoded, expected)

    def ops(channel: str) -> list:
        return [(event["op"], event.get("changed")) for event in decoded if event["channel"] == channel]

    # What each shape got (the same from both sources, as compared above).
    assert ops("shapes_composite") == [("INSERT", None), ("UPDATE", ["val"]), ("UPDATE", ["tenant", "code", "val"]),
                                       ("DELETE", None)] + [("INSERT", None)] * BULK + [("UPDATE", ["val"])] * BULK \
        + [("DELETE", None)] * BULK
    assert {exactjson.dumps(e["pk"]) for e in decoded if e["channel"] == "shapes_composite"} >= {
        '{"code":"one","tenant":1}', '{"code":"uno","tenant":1}'}
    assert {e["table"] for e in decoded if e["channel"] == "shapes_schema"} == {"shapes_other.items"}
    assert len(ops("shapes_schema")) == 3 + 3 * BULK
    assert ops("shapes_base")[:4] == [("INSERT", None), ("UPDATE", ["val"]), ("UPDATE", ["secret"]), ("DELETE", None)]
    assert ops("shapes_proxy")[:3] == [("INSERT", None), ("UPDATE", ["val"]), ("DELETE", None)]
    assert len(ops("shapes_base")) == 4 + 4 * BULK and len(ops("shapes_proxy")) == 3 + 3 * BULK
    assert all("secret" not in e["row"] for e in decoded if e["channel"] == "shapes_proxy")
    assert {e["table"] for e in decoded if e["channel"] == "shapes_reading"} == {"shapes_reading"}
    assert ops("shapes_reading")[:3] == [("INSERT", None), ("UPDATE", ["val"]), ("DELETE", None)]
    assert len(ops("shapes_reading")) == 3 + BULK + (BULK - 1) + BULK + BULK  # 39 rows in shapes_reading_low
    assert ops("shapes_sample") == [("INSERT", None), ("UPDATE", ["v"]), ("DELETE", None)] + [("INSERT", None)] * BULK \
        + [("UPDATE", ["v"])] * BULK + [("DELETE", None)] * BULK
    assert {(e["table"], e["pk"]) for e in decoded if e["channel"] == "shapes_sample"} == {
        ("shapes_sample", pk) for pk in [1, *range(101, 101 + BULK)]}
    amounts = [e for e in decoded if e["channel"] == "shapes_amount"]
    assert [(e["op"], e.get("changed")) for e in amounts[:4]] == [
        ("INSERT", None), ("UPDATE", ["amount"]), ("UPDATE", ["duration"]), ("DELETE", None)]
    assert str(amounts[0]["row"]["amount"]) == "12345678901234567890123456789012345678.12"
    assert amounts[0]["row"]["data"]["big"] == 2**65 + 1 and str(amounts[0]["row"]["data"]["e"]) == "1.5E-7"
    assert (amounts[0]["row"]["duration"], amounts[2]["row"]["duration"]) == ("P1DT2H3M4.5S", "P-1M3D")
    assert len(amounts) == 4 + 3 * BULK
    assert len(ops("shapes_place")) == 3 * BULK + 4 and len(ops("shapes_restaurant")) == 3 * BULK + 3
    # Every UPDATE names what it changed (an UPDATE that lost `changed` fails here), no other event does.
    assert [(op, changed) for op, changed in ops("shapes_place") + ops("shapes_restaurant")
            if (op == "UPDATE") != bool(changed)] == []
    # Multi-table inheritance as Django wrote it: each table's event only when its own row changed.
    assert ops("shapes_place")[-4:] == [("INSERT", None), ("UPDATE", ["name"]), ("UPDATE", ["city"]), ("DELETE", None)]
    assert ops("shapes_restaurant")[-3:] == [("INSERT", None), ("UPDATE", ["seats"]), ("DELETE", None)]
