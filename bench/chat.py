"""The chat at room scale: `USERS` users in one room, each with a socket, spread over 2 daphne
processes (Redis layer, one listener); messages stored at a fixed rate, each timed from its
commit to its frame at every socket.

A message travels as every change does: its row's trigger, `listen_notify`, one group message to
the room, and in each web process the room's fan-out writes the frame to every socket of the
room (pgnotify.web.fanout). The clients are the dashboards' small asyncio protocols
(bench.dashboards.WebsocketClient), in this process: 300 sockets at 20 messages/s is 6,000
frames/s, well within one process.

    python -m bench.chat write DATABASE_URL RATE SECONDS   # the writer process
"""

import asyncio
import gc
import json
import sys
import time

import orjson
import psycopg

from bench.dashboards import OPEN_TIMEOUT, WebsocketClient, upgrade_request
from bench.e2e import percentile
from bench.live import Sizes, forget_layer, make_users, raise_open_files
from bench.load import paced
from bench.stack import ROOT, WebStack

USERS, RATE, SECONDS = 300, 20, 30
QUICK_USERS, QUICK_SECONDS = 60, 5
ROOM = "bench"
CONNECTS_AT_ONCE = 10  # each join reads the history and the presence list, and tells the whole room
DRAIN_TIMEOUT = 10.0


class Member:
    """One user's socket in the room: the time each new message's frame arrived, by message id."""

    def __init__(self):
        self.after_id: int | None = None  # None until measuring: nothing before counts
        self.arrivals: dict[int, float] = {}
        self.warm = asyncio.Event()  # a chat message arrived live (not from the history)

    def on_frame(self, data: bytes, received: float) -> None:
        frame = orjson.loads(data)
        if frame.get("type") != "chat.message" or frame.get("history"):
            return
        self.warm.set()
        if self.after_id is not None and frame["id"] > self.after_id:
            self.arrivals.setdefault(frame["id"], received)


def write_messages(url: str, rate: float, seconds: float) -> list[list]:
    """Chat rows of one writer at `rate` per second; [id, commit time] of each."""
    commits = []
    with psycopg.connect(url, autocommit=True) as conn:
        def write():
            message_id = conn.execute("INSERT INTO pgnotify_chatmessage (room, username, message) "
                                      "VALUES (%s, 'writer', 'hello') RETURNING id", [ROOM]).fetchone()[0]
            commits.append([message_id, time.time()])

        paced(rate, seconds, 0.0, write)
    return commits


async def run_writer(database_url: str, rate: float, seconds: float, env: dict) -> dict:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.chat", "write", database_url,
                                                   str(rate), str(seconds), cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the chat writer exited with {process.returncode}")
    return json.loads(out)


async def connect_members(stack: WebStack, cookies: list[str]) -> tuple[list[Member], list[WebsocketClient]]:
    """A socket per user, alternating between the daphne processes, all joined."""
    gate, members, clients = asyncio.Semaphore(CONNECTS_AT_ONCE), [], []

    async def join(number: int, cookie: str) -> None:
        port = stack.ports[number % len(stack.ports)]
        member = Member()
        request, key = upgrade_request(f"ws://127.0.0.1:{port}/ws/chat/{ROOM}/", f"http://127.0.0.1:{port}", cookie)
        async with gate:
            _, client = await asyncio.get_running_loop().create_connection(
                lambda: WebsocketClient(request, key, member.on_frame), "127.0.0.1", port)
            clients.append(client)
            members.append(member)
            await asyncio.wait_for(client.opened, OPEN_TIMEOUT)

    await asyncio.wait_for(asyncio.gather(*(join(n, cookie) for n, cookie in enumerate(cookies))), 300)
    return members, clients


async def warm_up(members: list[Member], database_url: str, env: dict) -> None:
    """Messages a few at a time until every socket has had one live."""
    deadline = time.monotonic() + 60
    while True:
        await run_writer(database_url, 4, 0.5, env)
        try:
            await asyncio.wait_for(asyncio.gather(*(m.warm.wait() for m in members)), 1.0)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


async def wait_received(members: list[Member], ids: set[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    # Polled, bounded: an event per socket per frame would cost more than the clients' own work.
    while time.monotonic() < deadline and any(len(m.arrivals) < len(ids) for m in members):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def measure(stack: WebStack, database_url: str, cookies: list[str], rate: float, seconds: float) -> dict:
    members, clients = await connect_members(stack, cookies)
    try:
        await warm_up(members, database_url, stack.env)
        with psycopg.connect(database_url, autocommit=True) as conn:
            last = conn.execute("SELECT coalesce(max(id), 0) FROM pgnotify_chatmessage").fetchone()[0]
        for member in members:
            member.after_id = last
        gc.collect()
        gc.disable()  # the clients' own collector pauses are not the stack's latency
        try:
            written = await run_writer(database_url, rate, seconds, stack.env)
            committed = dict(written["commits"])
            await wait_received(members, set(committed), DRAIN_TIMEOUT)
        finally:
            gc.enable()
    finally:
        for client in clients:
            client.close()
    latencies = sorted(received - committed[message_id] for member in members
                       for message_id, received in member.arrivals.items() if message_id in committed)
    expected = len(committed) * len(members)
    ms = lambda value: None if value is None else round(value * 1000, 2)  # noqa: E731
    return {"chat_users": len(members), "chat_rate": rate, "chat_seconds": seconds, "chat_messages": len(committed),
            "chat_delivered_ratio": round(len(latencies) / expected, 5) if expected else None,
            "chat_p50_ms": ms(percentile(latencies, 0.50)), "chat_p99_ms": ms(percentile(latencies, 0.99)),
            "chat_max_ms": ms(latencies[-1] if latencies else None)}


def chat_figures(database_url: str, quick: bool, users: int | None = None, seconds: float | None = None) -> dict:
    """The chat rows on a migrated database of the bench's own (Redis must be reachable)."""
    raise_open_files()
    users = users or (QUICK_USERS if quick else USERS)
    seconds = seconds or (QUICK_SECONDS if quick else SECONDS)
    stack = WebStack(database_url, "redis", servers=2, login=False)
    made = make_users(stack.env, Sizes(users=users, snapshot_rows=0))
    try:
        with stack:
            return asyncio.run(measure(stack, database_url, [cookie for _, cookie in made["users"]], RATE, seconds))
    finally:
        forget_layer(stack.env["CHANNEL_LAYER_PREFIX"])


def main() -> None:
    if sys.argv[1] == "write":
        url, rate, seconds = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
        print(json.dumps({"commits": write_messages(url, rate, seconds)}))


if __name__ == "__main__":
    main()
