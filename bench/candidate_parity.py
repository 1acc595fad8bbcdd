"""Whether a change function sends the same events as the installed ones (each watched table's own,
pgnotify/schema/table_function.py): the same statements run under each, on a private server
(bench/private_server.py, migrated with the test settings), and every notification and every
event-log row must be the same, byte for byte, once the event's `ts` and `txid` (which differ
between runs) are numbered in order of appearance.

    .venv/bin/python -m bench.candidate_parity candidate.sql

FILE is an edited copy of pgnotify/schema/sql/log_changes.sql (a candidate body), or an earlier
body against the ones installed now: `git show REV:pgnotify/schema/sql/log_changes.sql > FILE`.
Every change trigger is moved to FILE's shared function for the second run (bench/writer_cost.py's
install_function): the shared body against the tables' own paths, with this release's FILE.

The statements are those of tests/test_shapes.py, tests/test_odd_values.py and tests/test_bulk.py's
kinds (single rows, statements of a few rows, bulk statements sent in chunks), plus the edges of an
UPDATE: of nothing, of excluded columns only, of a key, of a row moved between partitions.
Exits 1 and prints the first differences when they differ.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.private_server import PrivateServer, private_server  # noqa: E402
from bench.writer_cost import install_function  # noqa: E402

BULK = 40  # more than the trigger's 32 rows: the bulk path
LONE = '{"a":"\\udc00"}'  # json keeps the escape; jsonb refuses a lone surrogate
DEEP = "[" * 200 + "1" + "]" * 200

STATEMENTS = [
    # One key (the demo's orders), one row at a time and in statements of a few rows.
    "INSERT INTO shop_order (quantity) VALUES (1)",
    "UPDATE shop_order SET quantity = 2",
    "UPDATE shop_order SET quantity = quantity",  # nothing changed: no event
    "INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, 3)",
    "UPDATE shop_order SET status = 'paid' WHERE quantity = 1",
    "UPDATE shop_order SET id = id + 1000 WHERE id = (SELECT max(id) FROM shop_order)",  # its key changed
    "DELETE FROM shop_order WHERE quantity = 1",
    f"INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {BULK})",
    "UPDATE shop_order SET quantity = quantity + 1",
    "DELETE FROM shop_order",
    # A composite key.
    "INSERT INTO shapes_compositeitem (tenant, code, val) VALUES (1, 'one', 0)",
    "UPDATE shapes_compositeitem SET val = 1 WHERE tenant = 1 AND code = 'one'",
    "UPDATE shapes_compositeitem SET code = 'uno' WHERE tenant = 1 AND code = 'one'",
    "DELETE FROM shapes_compositeitem WHERE tenant = 1",
    f"INSERT INTO shapes_compositeitem (tenant, code, val) SELECT 2, 'c' || i, 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_compositeitem SET val = 7 WHERE tenant = 2",
    "INSERT INTO shapes_compositeitem (tenant, code, val) SELECT 3, 'd' || i, 0 FROM generate_series(1, 2) i",
    "UPDATE shapes_compositeitem SET val = 8 WHERE tenant = 3",
    "DELETE FROM shapes_compositeitem",
    # A table off the search path.
    "INSERT INTO shapes_other.items (id, name, val) VALUES (1, 'one', 0)",
    "UPDATE shapes_other.items SET val = 1 WHERE id = 1",
    "DELETE FROM shapes_other.items WHERE id = 1",
    f"INSERT INTO shapes_other.items (id, name, val) SELECT 100 + i, 'n', 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_other.items SET val = 7 WHERE id > 100",
    "DELETE FROM shapes_other.items WHERE id > 100",
    # A model and its proxy (which excludes `secret`): two targets.
    "INSERT INTO shapes_baseitem (name, val, secret) VALUES ('a', 0, 's')",
    "UPDATE shapes_baseitem SET secret = 't'",  # the proxy sees nothing changed
    "UPDATE shapes_baseitem SET val = 1, secret = 'u'",
    "INSERT INTO shapes_baseitem (name, val, secret) SELECT 'b', 0, 's' FROM generate_series(1, 2)",
    "UPDATE shapes_baseitem SET val = val + 1",
    "DELETE FROM shapes_baseitem WHERE name = 'a'",
    f"INSERT INTO shapes_baseitem (name, val, secret) SELECT 'c', 0, 's' FROM generate_series(1, {BULK})",
    "UPDATE shapes_baseitem SET secret = 'v'",
    "UPDATE shapes_baseitem SET val = 9",
    "DELETE FROM shapes_baseitem",
    # Partitions: straight to a sub-partition, through the partitioned table, a row moved.
    "INSERT INTO shapes_reading_high_b (id, sensor, val) VALUES (1600, 'one', 0)",
    "UPDATE shapes_reading_high_b SET val = 1 WHERE id = 1600",
    "UPDATE shapes_reading SET val = 2 WHERE id = 1600",
    "UPDATE shapes_reading SET id = 1100 WHERE id = 1600",
    "DELETE FROM shapes_reading_high WHERE id = 1100",
    f"INSERT INTO shapes_reading (id, sensor, val) SELECT 960 + i, 'n', 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_reading_low SET val = 7 WHERE id > 960",
    "UPDATE shapes_reading SET val = 8 WHERE id > 960",
    "DELETE FROM shapes_reading WHERE id > 960",
    # Keyed with the partition column: paired on (id, ts), `pk` is id.
    "INSERT INTO shapes_sample (id, ts, v) VALUES (1, '2026-01-05', 0)",
    "UPDATE shapes_sample SET v = 1 WHERE id = 1",
    "UPDATE shapes_sample_2026_01 SET ts = '2026-01-06' WHERE id = 1",
    "DELETE FROM shapes_sample_2026_01 WHERE id = 1",
    f"INSERT INTO shapes_sample (id, ts, v) SELECT 100 + i, date '2026-01-15' + i, 0 FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_sample SET v = 7 WHERE id > 100",
    "DELETE FROM shapes_sample WHERE id > 100",
    # Multi-table inheritance.
    "INSERT INTO shapes_place (name, city) VALUES ('p', 'c')",
    "INSERT INTO shapes_restaurant (place_ptr_id, seats) SELECT id, 4 FROM shapes_place",
    "UPDATE shapes_restaurant SET seats = 5",
    "DELETE FROM shapes_restaurant",
    "DELETE FROM shapes_place",
    # Numbers, jsonb and intervals (in ISO 8601).
    "INSERT INTO shapes_amount (amount, data, duration) VALUES (12345678901234567890.12, "
    "'{\"a\": [1, 2.50, null]}', '1 day 2 hours 3.5 seconds')",
    "UPDATE shapes_amount SET duration = '-3 mons'",
    "UPDATE shapes_amount SET data = '{\"a\": [1, 2.5, null]}'",  # the same jsonb: nothing changed
    f"INSERT INTO shapes_amount (amount, data, duration) SELECT i, '{{}}', i * interval '1 min' "
    f"FROM generate_series(1, {BULK}) i",
    "UPDATE shapes_amount SET amount = amount + 1",
    "DELETE FROM shapes_amount",
    # Odd values: a json column holding what jsonb refuses, deep documents, big rows, NaN.
    f"INSERT INTO shapes_oddvalue (doc, body) VALUES ('{LONE}', 'x')",
    """INSERT INTO shapes_oddvalue (doc) VALUES ('["\\u0000"]')""",
    """INSERT INTO shapes_oddvalue (doc) VALUES ('{"a":"\\ud83d\\ude00"}')""",
    f"INSERT INTO shapes_oddvalue (docb) VALUES ('{DEEP}')",
    f"INSERT INTO shapes_oddvalue (doc) VALUES ('{DEEP}')",
    "INSERT INTO shapes_oddvalue (body) VALUES (repeat('x', 100000))",  # too big for NOTIFY: truncated
    "INSERT INTO shapes_oddvalue (body) VALUES (repeat('y', 7850))",  # about NOTIFY's limit
    "INSERT INTO shapes_oddvalue (num, flt) VALUES ('NaN', 'NaN'), ('-Infinity', 'Infinity')",
    "UPDATE shapes_oddvalue SET body = 'y' WHERE body = 'x'",
    "UPDATE shapes_oddvalue SET num = 1 WHERE num = 'NaN'",
    "DELETE FROM shapes_oddvalue WHERE doc IS NOT NULL AND body = 'y'",
    f"INSERT INTO shapes_oddvalue (doc, body) SELECT '{LONE}', 'z' FROM generate_series(1, {BULK})",
    "UPDATE shapes_oddvalue SET body = 'w' WHERE body = 'z'",
    "DELETE FROM shapes_oddvalue",
    # 1,600 columns.
    "INSERT INTO shapes_wide (c1, c1599) VALUES (1, 1599)",
    "UPDATE shapes_wide SET c800 = 8",
    "DELETE FROM shapes_wide",
]
_TXID = re.compile(r'"txid": (\d+)')
_TS = re.compile(r'"ts": "[^"]*"')


def _reset(conn) -> None:
    tables = [name for (name,) in conn.execute(
        "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'pgnotify_change'").fetchall()]
    conn.execute(f"TRUNCATE {', '.join(tables)}, pgnotify_event CASCADE")
    conn.execute("SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'")
    conn.execute("ALTER TABLE shop_order ALTER created_at SET DEFAULT '2026-01-01 00:00Z'")  # the same in each run


def _normal(text: str, txids: dict) -> str:
    """The payload's text with its ts and txid made comparable between runs."""
    txid = json.loads(text)["txid"]
    number = txids.setdefault(txid, len(txids))
    text = _TS.sub('"ts": "<ts>"', text, count=1)  # the event's ts comes before its row (jsonb's key order)
    return text.replace(f'"txid": {txid}', f'"txid": <{number}>')


def events(server: PrivateServer) -> tuple[list, list]:
    """(notifications, event-log rows) of the statements, each run in its own transaction."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        _reset(conn)
    with psycopg.connect(server.url(), autocommit=True) as listening, \
            psycopg.connect(server.url(), autocommit=True) as writing:
        # Every target's channel: the arguments after the first four, three per target.
        arguments = listening.execute(
            "SELECT tgnargs, tgargs FROM pg_trigger WHERE tgname = 'pgnotify_change'").fetchall()
        channels = {args.split(b"\0")[index].decode() for count, args in arguments for index in range(4, count, 3)}
        for channel in [*channels, "parity_done"]:
            listening.execute(f'LISTEN "{channel}"')
        for statement in STATEMENTS:
            writing.execute(statement)
        writing.execute("NOTIFY parity_done")
        received = []
        for notification in listening.notifies(timeout=60):
            if notification.channel == "parity_done":
                break
            received.append((notification.channel, notification.payload))
        logged = writing.execute("SELECT id, channel, payload::text FROM pgnotify_event ORDER BY id").fetchall()
    txids: dict = {}
    return ([(channel, _normal(payload, txids)) for channel, payload in received],
            [(id_, channel, _normal(payload, txids)) for id_, channel, payload in logged])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("function", type=Path, help="the SQL file of the change function to compare")
    args = parser.parse_args()
    with private_server() as server:
        before = events(server)
        install_function(server, args.function)
        after = events(server)
    differences = 0
    for what, old, new in [("notifications", before[0], after[0]), ("logged events", before[1], after[1])]:
        print(f"{what}: {len(old)} installed, {len(new)} candidate")
        for index, (a, b) in enumerate(zip(old, new, strict=False)):
            if a != b:
                differences += 1
                if differences <= 5:
                    print(f"  #{index} differs:\n    installed {str(a)[:400]}\n    candidate {str(b)[:400]}")
        differences += abs(len(old) - len(new))
    print("same events" if differences == 0 else f"{differences} differences")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
