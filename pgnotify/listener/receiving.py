"""Reading notifications off the LISTEN connection, a batch per socket read.

psycopg's `notifies()` builds a Notify object and resumes an async generator for each
notification; taking libpq's queue directly after each socket read drains a flood about twice as
fast (bench.throughput). Notifications that psycopg itself reads while a query runs on the
connection (the checkpoint's) reach a notify handler and come first, so the order stays the
server's.
"""

import asyncio
from collections import deque

import psycopg

# At most this many notifications a batch: a flood that psycopg read during a query (tens of
# thousands at once) is handed on a batch at a time, each one's objects still in the CPU's cache
# (a batch of 40,000 made first and handed on after cost more than 1 us a notification).
BATCH = 128


class NotificationReceiver:
    def __init__(self, conn: psycopg.AsyncConnection):
        self.pgconn = conn.pgconn
        self.encoding = conn.info.encoding
        self._channels: dict[bytes, str] = {}  # one str per channel name: decoded once, its hash kept
        self._read_by_psycopg: deque[psycopg.Notify] = deque()
        conn.add_notify_handler(self._read_by_psycopg.append)

    async def receive(self, wait: float) -> list[tuple[str, str, int]]:
        """(channel, payload, pid) of the notifications that arrived, waiting up to `wait`
        seconds for some when none is waiting; an empty list when none came."""
        batch = self._take()
        if batch:
            return batch
        # What the socket holds already is read without a trip through the selector (a reader
        # registered and removed, a timer), which cost a flood about 0.5 us per notification;
        # the other tasks still run once per read.
        self.pgconn.consume_input()  # raises psycopg.OperationalError on a broken connection
        batch = self._take()
        if batch:
            await asyncio.sleep(0)
        elif wait > 0 and await self._readable(wait):
            self.pgconn.consume_input()
            batch = self._take()
        return batch

    def _take(self) -> list[tuple[str, str, int]]:
        """Up to BATCH notifications already read: psycopg's first, then libpq's queue."""
        early = self._read_by_psycopg
        batch = []
        for _ in range(min(len(early), BATCH)):
            notify = early.popleft()
            batch.append((notify.channel, notify.payload, notify.pid))
        pgconn, encoding, channels = self.pgconn, self.encoding, self._channels
        for _ in range(BATCH - len(batch)):
            if (n := pgconn.notifies()) is None:
                break
            relname = n.relname
            channel = channels.get(relname)
            if channel is None:
                channel = channels[relname] = relname.decode(encoding)
            batch.append((channel, n.extra.decode(encoding), n.be_pid))
        return batch

    def poll(self) -> list[tuple[str, str, int]]:
        """The notifications that arrived (up to BATCH), reading the socket without waiting."""
        self.pgconn.consume_input()
        return self._take()

    def take(self) -> list[tuple[str, str, int]]:
        """The notifications already read from the socket (up to BATCH)."""
        return self._take()

    async def _readable(self, wait: float) -> bool:
        return await readable(wait, self.pgconn.socket)


async def readable(wait: float, *fds: int, until: asyncio.Future | None = None) -> bool:
    """Wait up to `wait` seconds for one of the sockets `fds` to be readable, or for `until` to be
    done; False when neither came."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def settle(value: bool) -> None:
        if not ready.done():
            ready.set_result(value)

    def finished(_: asyncio.Future) -> None:
        settle(True)

    for fd in fds:
        loop.add_reader(fd, settle, True)
    timer = loop.call_later(wait, settle, False)
    if until is not None:
        until.add_done_callback(finished)
    try:
        return await ready
    finally:
        for fd in fds:
            loop.remove_reader(fd)
        timer.cancel()
        if until is not None:
            until.remove_done_callback(finished)
