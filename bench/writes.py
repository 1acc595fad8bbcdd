"""What the triggers cost writers: INSERT throughput and bulk UPDATE time, watched vs unwatched.

The baseline is the same table with its user triggers disabled (`ALTER TABLE ... DISABLE TRIGGER
USER` keeps the foreign-key checks): same columns, indexes and constraints, nothing watched.
Watched and unwatched rounds alternate and each figure is the median of its rounds, so a slow
spell of the machine (the disk's fsync, other processes) falls on both sides alike.
"""

import statistics
import threading
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


def insert_tps(url: str, table: str, writers: int, seconds: float) -> float:
    """Single-row autocommit INSERTs per second with `writers` concurrent connections."""
    counts = [0] * writers
    deadline = time.perf_counter() + seconds

    def write(index):
        with psycopg.connect(url, autocommit=True) as conn:
            statement = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table))
            while time.perf_counter() < deadline:
                conn.execute(statement)
                counts[index] += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


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
