"""What the change trigger costs a writer, in backend instructions per statement (valgrind), per
statement kind and per feature of the function: figures the machine's load does not move.

    .venv/bin/python -m bench.writer_cost                     # the installed change function
    .venv/bin/python -m bench.writer_cost --function candidate.sql   # an edited copy of log_changes.sql
    .venv/bin/python -m bench.writer_cost --compare before.json after.json   # --json files, as markdown

A private server (bench/private_server.py) is migrated with the test settings, so every shape of
watched table (tests/shapes) has the triggers `migrate` attaches, then restarted under valgrind
(cachegrind, no cache simulation). Each case runs in two sessions: the warm-up statements alone,
and the warm-up then N measured statements; the difference of the two backends' instructions, over
N, is one statement's cost (connection, plan caching and the function's compilation cancel out).
Each case is measured with the table's change triggers disabled (`unwatched`) and enabled.
`--function FILE` first replaces the shared change function by the one in FILE (an edited copy of
pgnotify/schema/sql/log_changes.sql, whose CREATE OR REPLACE statements replace the installed
function and its row helper under their own names) and moves every change trigger to it, from its
table's own function: FILE's body is measured without a table's own path.

Needs valgrind (Debian: apt-get install valgrind) and PostgreSQL's server binaries (pg_config).
"""

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.private_server import PrivateServer, private_server  # noqa: E402

WARMUP = 20
MEASURED = 100
BULK_ROWS = 2000
CHANGE_TRIGGERS = ("pgnotify_change", "pgnotify_change_insert", "pgnotify_change_delete")


@dataclass
class Case:
    name: str  # feature, statement kind
    table: str
    statement: str  # %s: one of `keys` (a row's id), or nothing for an INSERT
    fill: str = ""  # fills the table before the sessions, unwatched: `rows` rows
    bulk: bool = False  # the statement runs once, on BULK_ROWS rows: the cost is per row
    warmup: str = ""  # a bulk case's warm-up (a statement of 40 rows: the bulk path)
    keys: list = field(default_factory=list)


def _single(feature: str, table: str, insert: str, update: str, noop: str, delete: str, fill: str) -> list[Case]:
    return [Case(f"{feature}, INSERT", table, insert),
            Case(f"{feature}, UPDATE", table, update, fill),
            Case(f"{feature}, UPDATE of nothing", table, noop, fill),
            Case(f"{feature}, DELETE", table, delete, fill)]


ROWS = 2 * WARMUP + MEASURED
CASES = [
    *_single("one key (shop_order)", "shop_order", "INSERT INTO shop_order DEFAULT VALUES",
             "UPDATE shop_order SET quantity = quantity + 1 WHERE id = %s",
             "UPDATE shop_order SET quantity = quantity WHERE id = %s",
             "DELETE FROM shop_order WHERE id = %s",
             f"INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {ROWS})"),
    *_single("composite key", "shapes_compositeitem",
             "INSERT INTO shapes_compositeitem (tenant, code, val) VALUES (1, left(md5(random()::text), 20), 0)",
             "UPDATE shapes_compositeitem SET val = val + 1 WHERE tenant = 2 AND code = %s::text",
             "UPDATE shapes_compositeitem SET val = val WHERE tenant = 2 AND code = %s::text",
             "DELETE FROM shapes_compositeitem WHERE tenant = 2 AND code = %s::text",
             "INSERT INTO shapes_compositeitem (tenant, code, val) "
             f"SELECT 2, n::text, 0 FROM generate_series(1, {ROWS}) n"),
    *_single("two targets, one excluding a column", "shapes_baseitem",
             "INSERT INTO shapes_baseitem (name, val, secret) VALUES ('a', 0, 's')",
             "UPDATE shapes_baseitem SET val = val + 1 WHERE id = %s",
             "UPDATE shapes_baseitem SET val = val WHERE id = %s",
             "DELETE FROM shapes_baseitem WHERE id = %s",
             f"INSERT INTO shapes_baseitem (name, val, secret) SELECT 'a', 0, 's' FROM generate_series(1, {ROWS})"),
    *_single("partition", "shapes_reading",
             "INSERT INTO shapes_reading (id, sensor) SELECT coalesce(max(id), 999) + 1, 'x' FROM shapes_reading_high",
             "UPDATE shapes_reading SET val = val + 1 WHERE id = %s",
             "UPDATE shapes_reading SET val = val WHERE id = %s",
             "DELETE FROM shapes_reading WHERE id = %s",
             f"INSERT INTO shapes_reading (id, sensor) SELECT n, 'x' FROM generate_series(1, {ROWS}) n"),
    *_single("intervals, numeric, jsonb", "shapes_amount",
             "INSERT INTO shapes_amount (amount, data, duration) VALUES (1.5, '{\"a\": 1}', '1 day 2 hours')",
             "UPDATE shapes_amount SET amount = amount + 1 WHERE id = %s",
             "UPDATE shapes_amount SET amount = amount WHERE id = %s",
             "DELETE FROM shapes_amount WHERE id = %s",
             f"INSERT INTO shapes_amount (amount, data, duration) SELECT 1.5, '{{\"a\": 1}}', '1 day' "
             f"FROM generate_series(1, {ROWS})"),
    *_single("json column", "shapes_oddvalue",
             "INSERT INTO shapes_oddvalue (doc, body) VALUES ('{\"a\": 1}', 'x')",
             "UPDATE shapes_oddvalue SET body = body || 'y' WHERE id = %s",
             "UPDATE shapes_oddvalue SET body = body WHERE id = %s",
             "DELETE FROM shapes_oddvalue WHERE id = %s",
             f"INSERT INTO shapes_oddvalue (doc, body) SELECT '{{\"a\": 1}}', 'x' FROM generate_series(1, {ROWS})"),
    Case("json column, a value jsonb refuses, INSERT", "shapes_oddvalue",
         "INSERT INTO shapes_oddvalue (doc, body) VALUES ('{\"a\": \"\\u0000\"}', 'x')"),
    Case("bulk (shop_order), INSERT, per row", "shop_order",
         f"INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {BULK_ROWS})", bulk=True,
         warmup="INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, 40)"),
    Case("bulk (shop_order), UPDATE, per row", "shop_order",
         "UPDATE shop_order SET quantity = quantity + 1 WHERE id > (SELECT min(id) + 40 FROM shop_order)",
         f"INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {BULK_ROWS + 40})", bulk=True,
         warmup="UPDATE shop_order SET quantity = quantity + 1 WHERE id <= (SELECT min(id) + 39 FROM shop_order)"),
    Case("bulk (shop_order), DELETE, per row", "shop_order",
         "DELETE FROM shop_order WHERE id > (SELECT min(id) + 40 FROM shop_order)",
         f"INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {BULK_ROWS + 40})", bulk=True,
         warmup="DELETE FROM shop_order WHERE id <= (SELECT min(id) + 39 FROM shop_order)"),
]
_KEY = {"shapes_compositeitem": "code"}


def _relations(conn, table: str) -> list[str]:
    """The table and its partitions, at every level."""
    partitions = conn.execute("SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass)", [table]).fetchall()
    return [name for (name,) in partitions] or [table]


def _set_triggers(conn, table: str, enabled: bool) -> None:
    for relation in _relations(conn, table):
        for trigger in CHANGE_TRIGGERS:
            conn.execute(sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                sql.SQL(relation), sql.SQL("ENABLE" if enabled else "DISABLE"), sql.Identifier(trigger)))


def _reset(conn, case: Case) -> list:
    """Empties the table and the event log, fills the table (unwatched) and returns its keys."""
    conn.execute(sql.SQL("TRUNCATE {}, pgnotify_event CASCADE").format(sql.Identifier(case.table)))
    if case.fill:
        _set_triggers(conn, case.table, False)
        conn.execute(case.fill)
    key = _KEY.get(case.table, "id")
    keys = [k for (k,) in conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
        sql.Identifier(key), sql.Identifier(case.table))).fetchall()]
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(case.table)))
    conn.execute("VACUUM ANALYZE pgnotify_event")
    return keys


def _session(server: PrivateServer, statements: list[tuple[str, tuple]]) -> int:
    """Instructions of a backend that runs `statements` (each its own transaction, prepared)."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        pid = conn.info.backend_pid
        for statement, params in statements:
            conn.execute(statement, params, prepare=True)
    return server.instructions(pid)


def _prime(server: PrivateServer, table: str) -> None:
    """A session that reads the table: the first backend after an ALTER TABLE rebuilds the
    relation cache's init file, which neither measured session should pay."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT FROM {} LIMIT 0").format(sql.Identifier(table)))


def measure(server: PrivateServer, case: Case, watched: bool) -> float:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        keys = _reset(conn, case)
        _set_triggers(conn, case.table, watched)
    _prime(server, case.table)
    if case.bulk:
        alone = _session(server, [(case.warmup, ())])
        with psycopg.connect(server.url(), autocommit=True) as conn:
            keys = _reset(conn, case)
            _set_triggers(conn, case.table, watched)
        _prime(server, case.table)
        both = _session(server, [(case.warmup, ()), (case.statement, ())])
        return (both - alone) / BULK_ROWS
    params = [(k,) for k in keys] if "%s" in case.statement else [()] * ROWS
    run = [(case.statement, p) for p in params]
    alone = _session(server, run[:WARMUP])
    both = _session(server, run[WARMUP:2 * WARMUP + MEASURED])
    return (both - alone) / MEASURED


def install_function(server: PrivateServer, path: Path) -> None:
    """Replaces the shared change function by FILE's (an edited copy of log_changes.sql) and moves
    every change trigger to it, from its table's own function (pgnotify/schema/table_function.py)."""
    text = path.read_text()
    if not re.search(r"\bFUNCTION\s+pgnotify_log_changes\(", text):
        raise SystemExit(f"{path} defines no pgnotify_log_changes(): start from pgnotify/schema/sql/log_changes.sql")
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(text)
        triggers = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = ANY(%s)",
                                [list(CHANGE_TRIGGERS)]).fetchall()
        for (definition,) in triggers:
            conn.execute(re.sub(r"^CREATE TRIGGER", "CREATE OR REPLACE TRIGGER", re.sub(
                r"EXECUTE FUNCTION \S+\(", "EXECUTE FUNCTION pgnotify_log_changes(", definition)))


def compare(before: dict, after: dict) -> str:
    """A markdown table of two runs' figures (--json files): the trigger's own instructions per
    statement (watched less unwatched), before and after."""
    lines = ["| statement | unwatched | watched before | watched after | the trigger's own, before → after |",
             "|---|---|---|---|---|"]
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            continue
        own_old, own_new = old["watched"] - old["unwatched"], new["watched"] - new["unwatched"]
        lines.append(f"| {name} | {old['unwatched']:,} | {old['watched']:,} | {new['watched']:,} | "
                     f"{own_old:,} → {own_new:,} ({own_new / own_old - 1:+.0%}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--function", type=Path, help="an SQL file replacing the change function")
    parser.add_argument("--only", help="cases whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print two runs' --json figures as a markdown table, and measure nothing")
    args = parser.parse_args()
    if args.compare:
        print(compare(*(json.loads(path.read_text()) for path in args.compare)))
        return
    cases = [c for c in CASES if not args.only or args.only in c.name]
    results = {}
    with private_server() as server:
        if args.function:
            install_function(server, args.function)
        server.stop()
        server.start(valgrind=True)
        print(f"{'case':<52} {'unwatched':>10} {'watched':>10} {'ratio':>6}", flush=True)
        for case in cases:
            plain = measure(server, case, watched=False)
            watched = measure(server, case, watched=True)
            results[case.name] = {"unwatched": round(plain), "watched": round(watched)}
            print(f"{case.name:<52} {plain:>10,.0f} {watched:>10,.0f} {watched / plain:>6.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
