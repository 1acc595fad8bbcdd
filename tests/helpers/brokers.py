"""Pieces of the forwarding tests: a TCP proxy in front of a broker that can cut or freeze it, a
private nats-server, a webhook receiver that misbehaves on demand, a listener-with-one-forwarder
process to kill -9, an in-process listener and its writers, and reading a code block out of the docs."""

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.handlers.dispatcher import Dispatcher
from pgnotify.listener import Listener, ListenerOptions
from tests.helpers.faults import ThreadedProxy
from tests.helpers.support import ROOT, database_url_for_tests, free_port, process_env
from tests.helpers.waiting import eventually

# -- the docs' runnable examples


def code_block(doc: str, after: str, language: str = "python") -> str:
    """The first ```language block of docs/<doc> after the line containing `after`, verbatim."""
    text = (ROOT / "docs" / doc).read_text()
    start = text.index(after)
    match = re.compile(rf"^```{language}\n(.*?)^```", re.S | re.M).search(text, start)
    assert match, f"no {language} block after {after!r} in docs/{doc}"
    return match.group(1)


class DocConsumer:
    """A code block of the docs run as a script, with `env` (plus PATH) as its whole environment."""

    def __init__(self, source: str, directory: Path, env: dict):
        self.script = directory / "consumer.py"
        self.script.write_text(source)
        self.env = {**env, "PATH": "/usr/bin:/bin"}
        self.process = None

    async def start(self) -> "DocConsumer":
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.script), env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        return self

    async def lines(self, count: int, within: float = 20.0) -> list[str]:
        async def read() -> list[str]:
            return [(await self.process.stdout.readline()).decode().rstrip("\n") for _ in range(count)]

        return await asyncio.wait_for(read(), within)

    async def interrupt(self) -> tuple[int, str, str]:
        """SIGINT, as Ctrl-C would; returns the exit code and what is left on stdout and stderr."""
        self.process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(self.process.communicate(), 15)
        return self.process.returncode, out.decode(), err.decode()

    async def kill(self) -> None:
        self.process.kill()
        await self.process.communicate()


# -- a TCP proxy in front of a broker


class BrokerProxy(ThreadedProxy):
    """Relays 127.0.0.1:<port> to host:port from a thread of its own. `cut()`: every connection is
    reset and new ones are closed at once (the broker is gone); `freeze()`: nothing is relayed on
    any connection, old or new, and nothing is closed (the broker hangs); `restore()`: relays again."""

    def __init__(self, host: str, port: int):
        super().__init__(host, port)
        self.mode = "up"
        self._writers: set = set()

    def cut(self) -> None:
        self.mode = "down"
        self._loop.call_soon_threadsafe(self._abort_all)

    def freeze(self) -> None:
        self.mode = "frozen"

    def restore(self) -> None:
        self.mode = "up"
        self._loop.call_soon_threadsafe(self._abort_all)  # frozen connections end; clients reconnect

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, client_reader, client_writer) -> None:
        if self.mode == "down":
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))

        async def pump(reader, writer):
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    while self.mode == "frozen":  # noqa: ASYNC110 - set by the test's thread
                        await asyncio.sleep(0.05)
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))
        self._writers.difference_update((client_writer, server_writer))


# -- a private nats-server with JetStream, stopped and started by the test


class PrivateNats:
    def __init__(self, directory: Path):
        if shutil.which("nats-server") is None:
            pytest.skip("nats-server not installed")
        self.port = free_port()
        self.directory = directory
        self.process = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:  # waits on the server's own log, not on a timer
            if "Server is ready" in line:
                self._drain = threading.Thread(target=self._read_rest, args=(self.process.stderr,), daemon=True)
                self._drain.start()
                return
        raise RuntimeError(f"nats-server on port {self.port} did not start")

    @staticmethod
    def _read_rest(stream) -> None:
        with stream:
            for _ in stream:
                pass

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(15)
            self._drain.join(5)


# -- a webhook receiver


@dataclass
class Received:
    headers: dict
    body: bytes
    status: int


@dataclass
class WebhookReceiver:
    """An aiohttp server in a thread of its own. `mode`: "ok" (200), an int (that status),
    "hang" (answers nothing until the client gives up); `refuse` holds event ids answered 422.
    `stop()` closes the port (connections refused) and `start()` opens it again."""

    port: int = field(default_factory=free_port)
    mode: object = "ok"
    refuse: set = field(default_factory=set)
    received: list = field(default_factory=list)

    def __post_init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/orders"

    def _call(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self) -> "WebhookReceiver":
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._runner.cleanup())
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._call(self._cancel_the_rest())  # requests still hanging
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @staticmethod
    async def _cancel_the_rest() -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/hooks/orders", self._hook)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _hook(self, request):
        from aiohttp import web

        body = await request.read()
        mode = self.mode
        if mode == "hang":
            await asyncio.sleep(30)  # the client times out first
            return web.Response(status=504)
        ids = {int(i) for i in request.headers.get("X-Pgnotify-Event-Id", "").split(",") if i.strip().isdigit()}
        status = 422 if ids & self.refuse else (200 if mode == "ok" else int(mode))
        self.received.append(Received(dict(request.headers), body, status))
        return web.Response(status=status, text="refused: bad order" if status == 422 else "")

    def accepted(self) -> list[Received]:
        return [r for r in list(self.received) if 200 <= r.status < 300]


# -- a listener with one forwarder, as its own process (for kill -9)


class ForwardingProcess:
    """`python -m tests.helpers.forward_process CONFIG` against the test database; its stdout lines are
    JSON: {"state": ...} per state notice, and {"forwarded": ...} when it stops by a signal."""

    def __init__(self, name: str, channels: list[str], handler: dict):
        config = json.dumps({"name": name, "channels": channels, "handler": handler})
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.forward_process", config], cwd=ROOT,
                                     env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, is_json: bool) -> None:
        with stream:
            for line in stream:
                (self.lines.append(json.loads(line)) if is_json else self.errors.append(line.rstrip()))

    def wait_live(self, timeout: float = 30.0) -> "ForwardingProcess":
        def live() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"forwarding process exited before it was live: {self.errors[-20:]}")
            return any(line.get("state") == "live" for line in self.lines)

        eventually(live, timeout, what=lambda: f"the forwarding process to be live: {self.errors[-20:]}", interval=0.02)
        return self

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        for thread in self._threads:
            thread.join(5)

    def stop(self) -> dict:
        """SIGINT; returns the forwarder's counters the process printed on its way out."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # leave no process behind on the test database
                self.proc.wait(10)
                raise
        for thread in self._threads:
            thread.join(5)
        return next((line for line in reversed(self.lines) if "forwarded" in line), {})


# -- the database's side


def order_events_since(first_id: int) -> list[dict]:
    """Change events on channel orders in the event log with id >= first_id, by id."""
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        rows = conn.execute("SELECT payload FROM pgnotify_event WHERE channel = 'orders' AND id >= %s ORDER BY id",
                            [first_id]).fetchall()
    return [row[0] for row in rows]


def next_event_id() -> int:
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) + 1 FROM pgnotify_event").fetchone()[0]


def position_covers(name: str, event_ids: list[int]) -> int:
    """How many of the events the listener's recorded position covers."""
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pgnotify_event e, pgnotify_listener l WHERE l.name = %s AND e.id = ANY(%s) "
            "AND pg_visible_in_snapshot(e.txid, l.snapshot::pg_snapshot)", [name, event_ids]).fetchone()[0]



def stream_events(client, stream: str) -> list[dict]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)]


async def write_rows(orders: int, products: int = 0, prefix: str = "") -> int:
    """Commits `orders` transactions of one to three orders, then single products; returns the rows."""
    rows = 0
    async with await psycopg.AsyncConnection.connect(database_url_for_tests(), autocommit=True) as writer:
        for i in range(orders):
            async with writer.transaction():  # transactions of one to three rows
                for _ in range(1 + i % 3):
                    await writer.execute("INSERT INTO shop_order DEFAULT VALUES")
                    rows += 1
        for i in range(products):
            await writer.execute("INSERT INTO shop_product (sku, name) VALUES (%s, 'fwd')", [f"{prefix}{i}"])
            rows += 1
    return rows


def start_listener(name: str, channels: list[str], handlers: list):
    """A listener in this event loop handing on to `handlers`: (listener, its stop event, its task)."""
    stop = asyncio.Event()
    options = ListenerOptions(channels=channels, name=name, retention=timedelta(hours=1))
    listener = Listener(listener_conninfo(), options, Dispatcher(handlers, patience=0.2))
    return listener, stop, asyncio.create_task(listener.run(stop))
