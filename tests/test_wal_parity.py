"""Both sources make the same events: one table with a column of every type, the NOTIFY source's
trigger and the WAL source's publication on it at once, the same changes written once; the
event log's events (what the NOTIFY source hands on) and the WAL listener's must be equal but
for `id` and `ts` (the trigger's clock against the commit's)."""

import asyncio
import json
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.listener import ListenerOptions, Notification
from pgnotify.listener.wal import WalListener, WalTable
from tests.faults import RecordingSink
from tests.sources import drop_database_slots

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
TRIGGERS = f"""
    CREATE TRIGGER pgnotify_change AFTER UPDATE ON {TABLE} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_notify_change_v3('{CHANNEL}', 'tests.parity', 'id', '{{secret}}');
    CREATE TRIGGER pgnotify_change_insert AFTER INSERT ON {TABLE} REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_notify_change_v3('{CHANNEL}', 'tests.parity', 'id', '{{secret}}');
    CREATE TRIGGER pgnotify_change_delete AFTER DELETE ON {TABLE} REFERENCING OLD TABLE AS old_rows
      FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_notify_change_v3('{CHANNEL}', 'tests.parity', 'id', '{{secret}}');
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
    "UPDATE parity_types SET label = label WHERE small = 7",  # nothing changed: an event with no column
    "UPDATE parity_types SET id = id + 1000 WHERE small = -32768",  # a new key: every column changed
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


def logged_events(conninfo: dict) -> list[dict]:
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        rows = conn.execute("SELECT payload::text FROM pgnotify_event WHERE channel = %s ORDER BY id",
                            [CHANNEL]).fetchall()
    return [Notification(CHANNEL, payload).event for (payload,) in rows]


def comparable(event: dict) -> tuple:
    rest = {key: value for key, value in event.items() if key not in {"id", "ts"}}
    return event["txid"], event["op"], json.dumps(event["pk"]), json.dumps(rest, sort_keys=True, default=str)


def differences(wal: dict, notify: dict) -> dict:
    """Fields (and row columns) whose values differ: (WAL's, NOTIFY's)."""
    out = {key: (wal.get(key), notify.get(key)) for key in (wal.keys() | notify.keys()) - {"id", "ts", "row"}
           if json.dumps(wal.get(key)) != json.dumps(notify.get(key))}
    rows = wal.get("row", {}), notify.get("row", {})
    out.update({f"row.{key}": (rows[0].get(key, "<absent>"), rows[1].get(key, "<absent>"))
                for key in rows[0].keys() | rows[1].keys()
                if json.dumps(rows[0].get(key, "<absent>")) != json.dumps(rows[1].get(key, "<absent>"))})
    return out


async def test_both_sources_make_the_same_events_for_every_column_type():
    conninfo = listener_conninfo()
    with psycopg.connect(autocommit=True, **conninfo) as conn:
        conn.execute(SETUP)
        conn.execute(TRIGGERS)
    sink, stop = RecordingSink(), asyncio.Event()
    table = WalTable(TABLE, CHANNEL, "tests.parity", ("id",), frozenset({"secret"}))
    name = f"parity-{uuid.uuid4().hex[:8]}"
    listener = WalListener(conninfo, ListenerOptions(channels=["system"], name=name), sink, [table],
                           publication=PUBLICATION)
    task = asyncio.create_task(listener.run(stop))
    try:
        await sink.wait_for(lambda: "live" in sink.states(), within=20)
        await asyncio.to_thread(write_changes, conninfo)
        expected = logged_events(conninfo)
        await sink.wait_for(lambda: len(sink.events()) >= len(expected), within=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        with psycopg.connect(autocommit=True, **conninfo) as conn:
            conn.execute(f"DROP PUBLICATION {PUBLICATION}; DROP TABLE {TABLE}; DROP TYPE parity_mood; "
                         "DROP DOMAIN parity_positive")
        drop_database_slots(conninfo["dbname"])
    decoded = [notification.event for notification in sink.events()]
    assert len(expected) == 108  # 6 + 3 + 40 inserted, 10 updates (3 single, 7 in one statement), 49 deleted
    assert len(decoded) == len(expected)
    for wal, notify in zip(sorted(decoded, key=comparable), sorted(expected, key=comparable), strict=True):
        assert differences(wal, notify) == {}
        assert abs(datetime.fromisoformat(wal["ts"]) - datetime.fromisoformat(notify["ts"])) < timedelta(seconds=5)
        assert wal["ts"].endswith("+00:00")
    updates = [event for event in decoded if event["op"] == "UPDATE"]
    renamed = next(event for event in updates if event["row"]["label"] == "renamed")
    assert renamed["changed"] == ["label"] and renamed["row"]["big_text"] == "x" * 20000  # from the old row
    assert [] in [event["changed"] for event in updates]  # the UPDATE that changed nothing
    assert {"day"} <= {name for event in updates for name in event["changed"]}
    ids = [event["id"] for event in decoded]
    assert len(set(ids)) == len(ids) and all(0 < i < 2**53 for i in ids)
    text = json.dumps(decoded)
    assert "hidden-" not in text and '"secret"' not in text
