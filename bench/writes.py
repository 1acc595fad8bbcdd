"""What the triggers cost writers: INSERT throughput and bulk UPDATE time, watched vs unwatched."""

import threading
import time

import psycopg
from psycopg import sql


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


def bulk_update_seconds(url: str, table: str, rows: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
        conn.execute(sql.SQL("INSERT INTO {} (quantity) SELECT 1 FROM generate_series(1, %s)").format(
            sql.Identifier(table)), [rows])
        start = time.perf_counter()
        conn.execute(sql.SQL("UPDATE {} SET quantity = quantity + 1").format(sql.Identifier(table)))
        return time.perf_counter() - start
