"""Paced writer: single-row autocommit INSERTs into a watched table at a fixed rate, for a
bounded time. Runs as its own process so it does not share a GIL with the websocket clients:

    python -m bench.load DATABASE_URL RATE SECONDS    # prints {"written": N, "seconds": S, "commits": [...]}

"commits" holds [pk, time] for every row: the wall-clock time its autocommit INSERT returned,
that is, when its commit was done (the e2e latency is counted from there).
"""

import itertools
import json
import math
import sys
import threading
import time

import psycopg

ROWS_PER_WRITER_PER_S = 400  # one connection's comfortable share on a busy 2-core machine


def paced(rate: float, seconds: float, offset: float, write) -> int:
    """Calls write() at start + offset + i/rate until `seconds` are over; late calls catch up."""
    start = time.perf_counter()
    deadline, written = start + seconds, 0
    while True:
        due = start + offset + written / rate
        if due >= deadline:
            return written
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        write()
        written += 1


def write_orders(url: str, rate: float, seconds: float, customers: list[int] | None = None) -> list[list]:
    """Writes the rows; returns [pk, commit time] of each. With `customers`, the rows' customer_id
    takes their values in turn and each entry is [pk, commit time, customer_id]."""
    writers = max(1, math.ceil(rate / ROWS_PER_WRITER_PER_S))
    commits: list[list] = []  # list.append is atomic: the writer threads share it
    turn = itertools.count()  # next() is atomic too
    # Every connection is made before the first row: a connection's start-up (a new backend, on
    # these 2 cores) beside the first rows held the stack back up to 90 ms, 2% of a 10-s run.
    connected = threading.Barrier(writers)

    def run(index: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            connected.wait(30)  # BrokenBarrierError when another writer could not connect
            def write():
                if customers:
                    customer = customers[next(turn) % len(customers)]
                    pk = conn.execute("INSERT INTO shop_order (customer_id) VALUES (%s) RETURNING id",
                                      [customer]).fetchone()[0]
                    commits.append([pk, time.time(), customer])
                    return
                pk = conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0]
                commits.append([pk, time.time()])

            paced(rate / writers, seconds, index / rate, write)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return commits


def main() -> None:
    url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    started = time.perf_counter()
    commits = write_orders(url, rate, seconds)
    print(json.dumps({"written": len(commits), "seconds": round(time.perf_counter() - started, 3), "commits": commits}),
          flush=True)


if __name__ == "__main__":
    main()
