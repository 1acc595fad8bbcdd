"""The live data client (pgnotify/static/pgnotify/live-client.js), run by Node 20 against a real
websocket server written here that speaks the frames of docs/live.md: it keeps a keyed view equal to
the frames (snapshot pages, changes, resync), keeps every digit of a number, reports errors, and
after a dropped socket reconnects with capped exponential backoff and resumes each subscription
from its last position. The server side itself is tested in the live server's own tests."""

import asyncio
import json
import threading
import time
import uuid
from http import HTTPStatus

import pytest
from websockets.asyncio.server import serve

from tests.helpers.nodejs import NODE_HOME, node_with, run_script
from tests.helpers.support import ROOT, ManagedProcess
from tests.helpers.web import Daphne

WS = "ws@8.18.0"
BIG = "9007199254740993"  # 2^53 + 1: a double reads 9007199254740992
TOTAL = "12345678901234567890123456789.12"
MIN_DELAY_MS, MAX_DELAY_MS = 100, 400
REFUSED_HANDSHAKES = 3  # after the first drop: the delays double, then hit the cap


def big_row(status: str) -> str:
    """A row as the server encodes it: the pk and total written with every digit, unquoted."""
    return f'{{"id": {BIG}, "number": "A-2", "status": "{status}", "total": {TOTAL}}}'


def row(pk: int, status: str = "paid") -> str:
    return json.dumps({"id": pk, "number": f"A-{pk}", "status": status, "total": 10.5})


class FakeLiveServer:
    """A websocket server on a free port, in its own thread, playing one script per accepted socket:
    1st: an error for `nope`, two snapshot pages and four changes for s1, then the socket drops;
    then REFUSED_HANDSHAKES handshakes answered 503;
    2nd: resync, a fresh snapshot and a change, then the socket drops;
    3rd: one change; then it waits for the client's unsubscribe.
    It records every frame the client sends (per socket) and when each handshake came."""

    def __init__(self):
        self.received: list[list[dict]] = []
        self.handshakes: list[float] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the fake server did not start"

    def _run(self):
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self):
        self.stopped = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._handshake) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stopped.wait()

    def stop(self):
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(10)

    def _handshake(self, connection, request):
        self.handshakes.append(time.monotonic())
        if 2 <= len(self.handshakes) <= 1 + REFUSED_HANDSHAKES:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "restarting\n")
        return None

    async def _handler(self, websocket):
        frames: list[dict] = []
        self.received.append(frames)
        script = [self._first, self._second, self._third][len(self.received) - 1]
        await script(websocket, frames)

    @staticmethod
    async def _read(websocket, frames, count):
        for _ in range(count):
            frames.append(json.loads(await websocket.recv()))

    async def _first(self, websocket, frames):
        await self._read(websocket, frames, 2)  # subscribe s1, subscribe s2
        await websocket.send('{"type": "error", "id": "s2", "message": "unknown stream: nope"}')
        await websocket.send(f'{{"type": "snapshot", "id": "s1", "rows": [{row(1)}, {row(3)}], '
                             '"position": "P0", "done": false}')
        await websocket.send(f'{{"type": "snapshot", "id": "s1", "rows": [{big_row("paid")}], '
                             '"position": "P1", "done": true}')
        for op, body, position in [("INSERT", row(4), "P2"), ("UPDATE", row(1, "shipped"), "P3"),
                                   ("DELETE", '{"id": 3}', "P4"), ("UPDATE", big_row("shipped"), "P5")]:
            await websocket.send(f'{{"type": "change", "id": "s1", "op": "{op}", "row": {body}, '
                                 f'"position": "{position}"}}')
        await asyncio.sleep(0.2)  # lets the client take in the frames before the cut
        websocket.transport.abort()  # no close frame: as when a server process dies

    async def _second(self, websocket, frames):
        await self._read(websocket, frames, 1)
        await websocket.send('{"type": "resync", "id": "s1"}')
        await websocket.send(f'{{"type": "snapshot", "id": "s1", "rows": [{row(7)}], "position": "Q1", "done": true}}')
        await websocket.send(f'{{"type": "change", "id": "s1", "op": "INSERT", "row": {row(8)}, "position": "Q2"}}')
        await asyncio.sleep(0.2)
        websocket.transport.abort()

    async def _third(self, websocket, frames):
        await self._read(websocket, frames, 1)
        await websocket.send('{"type": "change", "id": "s1", "op": "DELETE", "row": {"id": 7}, "position": "Q3"}')
        await self._read(websocket, frames, 1)  # the unsubscribe
        await websocket.wait_closed()


# The client's side: every callback is logged; the view is logged as [key, row] pairs.
CLIENT = """
import WebSocket from "ws";
import { connect } from "%(client)s";
const log = [];
const view = (rows) => [...rows.entries()];
const done = new Promise((resolve) => {
  const live = connect("ws://127.0.0.1:%(port)d/ws/live/", {
    WebSocket, minDelayMs: %(min)d, maxDelayMs: %(max)d,
    onStatus: (status, detail) => log.push(["connection", status, detail]),
  });
  const s1 = live.subscribe("my-orders", { filter: { status: ["paid", "shipped"] } }, {
    onSnapshot: (rows, info) => log.push(["snapshot", view(rows), info.position]),
    onChange(change, rows) {
      log.push(["change", change.op, change.key, change.position, view(rows)]);
      if (change.position === "Q3") {
        this.unsubscribe();
        live.close();
        resolve(view(this.rows));
      }
    },
    onStatus: (status) => log.push(["s1", status]),
  });
  live.subscribe("nope", {}, {
    onError: (message) => log.push(["error", "s2", message]),
    onStatus: (status) => log.push(["s2", status]),
  });
});
const rows = await done;
process.stdout.write(JSON.stringify({ log, rows }));
"""


@pytest.fixture(scope="module")
def node() -> str:
    return node_with(WS)


@pytest.fixture
def server():
    server = FakeLiveServer()
    yield server
    server.stop()


def keyed(pairs: list) -> dict:
    return {str(key): row for key, row in pairs}


@pytest.mark.once
def test_the_client_keeps_its_view_and_resumes_after_a_drop(node, server):
    client = (ROOT / "pgnotify" / "static" / "pgnotify" / "live-client.js").as_uri()
    script = CLIENT % {"client": client, "port": server.port, "min": MIN_DELAY_MS, "max": MAX_DELAY_MS}
    result = run_script(node, script, timeout=30)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    log = out["log"]

    # The first socket: both subscriptions, with the filter as given, and no position yet.
    first, second, third = server.received
    assert first == [{"type": "subscribe", "id": "s1", "stream": "my-orders",
                      "filter": {"status": ["paid", "shipped"]}},
                     {"type": "subscribe", "id": "s2", "stream": "nope"}]

    # The error frame reaches s2's onError; s2 is not subscribed again on the next sockets.
    assert ["error", "s2", "unknown stream: nope"] in log and ["s2", "error"] in log

    # The snapshot: both pages, the big pk and total with every digit, as strings.
    snapshots = [entry for entry in log if entry[0] == "snapshot"]
    assert snapshots[0][2] == "P1"
    assert keyed(snapshots[0][1]) == {"1": {"id": 1, "number": "A-1", "status": "paid", "total": 10.5},
                                      "3": {"id": 3, "number": "A-3", "status": "paid", "total": 10.5},
                                      BIG: {"id": BIG, "number": "A-2", "status": "paid", "total": TOTAL}}

    # Changes: INSERT and UPDATE set the row, DELETE removes it, each keyed by pk.
    changes = [entry for entry in log if entry[0] == "change"]
    assert [(op, str(key), position) for _, op, key, position, _ in changes] == [
        ("INSERT", "4", "P2"), ("UPDATE", "1", "P3"), ("DELETE", "3", "P4"), ("UPDATE", BIG, "P5"),
        ("INSERT", "8", "Q2"), ("DELETE", "7", "Q3")]
    after_p5 = keyed(changes[3][4])
    assert sorted(after_p5) == sorted(["1", "4", BIG])
    assert after_p5["1"]["status"] == "shipped" and after_p5[BIG] == {
        "id": BIG, "number": "A-2", "status": "shipped", "total": TOTAL}

    # Resumed from the last position it had, with the same filter, and only s1.
    assert second == [{"type": "subscribe", "id": "s1", "stream": "my-orders",
                       "filter": {"status": ["paid", "shipped"]}, "after": "P5"}]
    # resync: the view starts over from the fresh snapshot (rows 1, 4 and BIG are gone).
    assert ["s1", "resyncing"] in log
    assert snapshots[1][2] == "Q1" and keyed(snapshots[1][1]) == {
        "7": {"id": 7, "number": "A-7", "status": "paid", "total": 10.5}}
    assert third == [{"type": "subscribe", "id": "s1", "stream": "my-orders",
                      "filter": {"status": ["paid", "shipped"]}, "after": "Q2"},
                     {"type": "unsubscribe", "id": "s1"}]
    assert keyed(out["rows"]) == {"8": {"id": 8, "number": "A-8", "status": "paid", "total": 10.5}}

    # Backoff: each delay drawn in [d/2, d], d doubling from the minimum up to the cap; an open
    # socket starts over from the minimum.
    retries = [detail for _, status, detail in (e for e in log if e[0] == "connection") if status == "reconnecting"]
    ceilings = [min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** n) for n in range(1 + REFUSED_HANDSHAKES)] + [MIN_DELAY_MS]
    assert [retry["attempt"] for retry in retries] == [1, 2, 3, 4, 1]
    for retry, ceiling in zip(retries, ceilings, strict=True):
        assert ceiling / 2 <= retry["retryInMs"] <= ceiling, (retries, ceilings)
    # The server saw the client wait at least that long before each new handshake.
    gaps = [later - earlier for earlier, later in zip(server.handshakes[1:], server.handshakes[2:], strict=False)]
    for gap, retry in zip(gaps, retries[1:], strict=True):
        assert gap >= retry["retryInMs"] / 1000 * 0.95, (gaps, retries)
    assert len(server.handshakes) == 2 + REFUSED_HANDSHAKES + 1


# Against the real server: alice's session cookie on the socket (ws sends no Origin by itself).
REAL_CLIENT = """
import WebSocket from "ws";
import { connect } from "%(client)s";
const say = (line) => process.stdout.write(JSON.stringify(line) + "\\n");
class Alice extends WebSocket {
  constructor(url) { super(url, { headers: { Cookie: "sessionid=%(session)s", Origin: "%(origin)s" } }); }
}
const live = connect("%(url)s", { WebSocket: Alice, minDelayMs: 100, maxDelayMs: 400,
                                   onStatus: (status) => say({ status }) });
live.subscribe("my-orders", {}, {
  onSnapshot: (rows) => say({ snapshot: [...rows.keys()], rows: [...rows.values()] }),
  onChange: (change, rows) => say({ op: change.op, key: change.key, row: change.row, keys: [...rows.keys()] }),
  onError: (message) => say({ error: message }),
});
process.stdin.on("end", () => { live.close(); process.exit(0); });
process.stdin.resume();
"""


def client_lines(process: ManagedProcess) -> list[dict]:
    return [json.loads(line) for line in process.stdout_lines]


def wait_line(process: ManagedProcess, predicate, timeout: float = 10.0) -> dict:
    return process.wait_for(lambda lines: next(
        (line for line in map(json.loads, lines) if predicate(line)), None), timeout)


@pytest.mark.django_db(transaction=True)
def test_the_client_against_daphne_keeps_every_digit_and_resumes_after_a_restart(node, postgres_stack):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from notifyproject.shop.models import Order

    alice, bob = (get_user_model().objects.create_user(name, password="pw-" + name) for name in ("alice", "bob"))
    Order.objects.create(id=int(BIG), customer=alice, quantity=1, total="10.00", status="new")
    Order.objects.create(customer=bob, quantity=1, total="1.00")
    browser = Client()
    browser.force_login(alice)
    url = postgres_stack.url
    script = NODE_HOME / f"real-{uuid.uuid4().hex[:8]}.mjs"
    script.write_text(REAL_CLIENT % {
        "client": (ROOT / "pgnotify" / "static" / "pgnotify" / "live-client.js").as_uri(),
        "session": browser.cookies["sessionid"].value, "origin": url,
        "url": url.replace("http://", "ws://") + "/ws/live/"})
    client = ManagedProcess(str(script), python=node, manage=False, cwd=NODE_HOME, stdin=True)
    try:
        # The snapshot: alice's one order, its pk with every digit (a string: a double has no 2^53 + 1).
        snapshot = wait_line(client, lambda line: "snapshot" in line or "error" in line)
        assert snapshot == {"snapshot": [BIG], "rows": [snapshot["rows"][0]]} and snapshot["rows"][0]["id"] == BIG
        Order.objects.filter(pk=int(BIG)).update(status="paid")
        change = wait_line(client, lambda line: line.get("op"))
        assert change["op"] == "UPDATE" and change["key"] == BIG and change["row"]["status"] == "paid"

        # daphne goes away; what alice's orders go through meanwhile reaches the client once it is
        # back, as changes (no new snapshot), in order.
        postgres_stack.daphne.stop()
        wait_line(client, lambda line: line.get("status") == "reconnecting")
        Order.objects.filter(pk=int(BIG)).update(status="shipped")
        added = Order.objects.create(customer=alice, quantity=2, total="2.00")
        Order.objects.create(customer=bob, quantity=2, total="2.00")
        postgres_stack.daphne = Daphne(postgres_stack.env, port=postgres_stack.daphne.port).wait_ready()
        wait_line(client, lambda line: line.get("op") == "INSERT", timeout=20)
        lines = client_lines(client)
        resumed = lines[lines.index({"status": "open"}, lines.index({"status": "reconnecting"})):]
        assert [(line["op"], str(line["key"]), line["row"].get("status")) for line in resumed if "op" in line] == [
            ("UPDATE", BIG, "shipped"), ("INSERT", str(added.pk), "new")]
        assert not [line for line in resumed if "snapshot" in line or "error" in line]
        assert sorted(resumed[-1]["keys"], key=str) == sorted([BIG, added.pk], key=str)
    finally:
        client.stop()
        script.unlink()
