"""CPU time of the WAL listener's decoding alone: 100,000 pgoutput changes of a `shop_order`-like
row (INSERTs, then UPDATEs with the old row of REPLICA IDENTITY FULL) built in memory and handed to
WalListener._decode (parse_copy_data, the events, statistics) into a no-op sink, in-process, with
no network. The best of `rounds` rounds, in CPU seconds (process time, which a shared machine
disturbs less than wall time). To compare two checkouts, run it alternately against each:

    .venv/bin/python bench/wal_decode.py CODE_ROOT DATABASE_URL [rounds]

(DATABASE_URL: any database of the server; it is asked only for the type of varchar.)
"""

import asyncio
import struct
import sys
import time

root, url = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
sys.path.insert(0, root)

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from pgnotify.listener import ListenerOptions  # noqa: E402
from pgnotify.listener.notification import now  # noqa: E402
from pgnotify.listener.wal import WalListener, changes  # noqa: E402

COLUMNS = [("id", 20), ("number", 1043), ("customer_id", 23), ("product_id", 20), ("quantity", 23),
           ("status", 1043), ("total", 1700), ("created_at", 1184)]
OID = 16400


def xlog(lsn, message):
    return b"w" + struct.pack("!QQq", lsn, lsn, 0) + message


def relation():
    body = b"R" + struct.pack("!I", OID) + b"public\0shop_order\0" + b"f" + struct.pack("!H", len(COLUMNS))
    for name, oid in COLUMNS:
        body += b"\1" + name.encode() + b"\0" + struct.pack("!Ii", oid, -1)
    return body


def tuple_data(values):
    out = struct.pack("!H", len(values))
    for value in values:
        if value is None:
            out += b"n"
        else:
            data = value.encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out


def row(i, quantity="1"):
    return [str(i), f"ORD-{i:08d}", None, None, quantity, "new", "99.90", "2026-11-30 10:00:00.123456+00"]


def messages(op, count, start_lsn):
    out, lsn = [], start_lsn
    for first in range(0, count, 100):
        out.append(xlog(lsn, b"B" + struct.pack("!QqI", lsn + 100_000, 0, 1000 + first)))
        for i in range(first, first + 100):
            lsn += 64
            if op == "INSERT":
                body = b"I" + struct.pack("!I", OID) + b"N" + tuple_data(row(i))
            else:
                body = (b"U" + struct.pack("!I", OID) + b"O" + tuple_data(row(i)) + b"N"
                        + tuple_data(row(i, "2")))
            out.append(xlog(lsn, body))
        lsn += 64
        out.append(xlog(lsn, b"C" + struct.pack("!BQQq", 0, lsn, lsn + 8, 0)))
    return out


class Sink:
    count = 0

    async def handle(self, notification):
        self.count += 1

    async def notice(self, notice):
        pass

    async def flush(self):
        pass


def tables():
    if hasattr(changes, "WalTarget"):
        return [changes.WalTable("shop_order", targets=(changes.WalTarget("orders", "shop.order"),))]
    return [changes.WalTable("shop_order", "orders", "shop.order")]  # checkouts before WalTarget


async def main():
    conninfo = conninfo_to_dict(url)
    sink = Sink()
    listener = WalListener(conninfo, ListenerOptions(channels=["system"], name="decode-bench"), sink, tables())
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await listener._decode([xlog(1, relation())], None, 0, now(), conn, None)
        results = {}
        for op in ("INSERT", "UPDATE"):
            data = messages(op, 100_000, 1 << 20)
            times = []
            for _ in range(rounds):
                listener._last_commit = 0
                started = time.process_time()
                transaction = None
                for at in range(0, len(data), 5000):
                    transaction = await listener._decode(data[at:at + 5000], transaction, 0, now(), conn, None)
                times.append(time.process_time() - started)
            results[op] = min(times)
    print(" ".join(f"{op}={seconds:.3f}" for op, seconds in results.items()), f"(CPU s per 100,000; {root})")


asyncio.run(main())
