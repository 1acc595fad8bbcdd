"""Live streams under load (docs/live.md): many users, each subscribed to the demo's `my-orders`
stream (their own rows of shop.Order) from two tabs, on 2 daphne processes with the Redis layer and
one listener. Rows are written at a fixed rate, each for one subscribed user; every change frame a
client receives is checked against the user the row was written for.

    python -m bench.run --only live [--quick]

Phases on one stack: the small size, then the full size (the cost ratio compares their daphne CPU
per change at the same rate), then a snapshot of one user's many rows. The users are created in
bulk with unusable passwords and logged in by writing their sessions directly. The clients are
`CLIENT_PROCESSES` processes of small asyncio protocols (bench.dashboards.WebsocketClient), one
socket per user each: a user's two tabs are on the two daphne processes.

Subcommands (run by the bench itself): `users`, `client` and `write`.
"""

import asyncio
import gc
import json
import random
import resource
import statistics
import sys
import time
import urllib.parse
from dataclasses import dataclass

import orjson
import psutil

from bench.dashboards import TEXT, WebsocketClient, client_frame, upgrade_request
from bench.e2e import percentile
from bench.stack import REDIS_URL, ROOT, WebStack

CLIENT_PROCESSES = 2  # one per daphne process: each client process holds one tab of every user
CONNECTS_AT_ONCE = 25  # per client process: handshakes and snapshots in flight
OPEN_ATTEMPTS = 3
READY_TIMEOUT = 600.0  # seconds for every socket to be open and live
DRAIN_TIMEOUT = 10.0  # seconds after the last write for the frames still on their way
IDLE_SECONDS = 3.0  # the daphnes' CPU with the sockets open and no change
SNAPSHOT_ROUNDS = 3
SUBSCRIBE = orjson.dumps({"type": "subscribe", "id": "s", "stream": "my-orders"})


@dataclass
class Sizes:
    users: int = 5000  # two subscriptions each
    small_users: int = 500
    rate: float = 500
    seconds: float = 30
    snapshot_rows: int = 10_000


FULL = Sizes()
QUICK = Sizes(users=200, small_users=20, rate=100, seconds=5, snapshot_rows=2000)


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- `users`: run with the stack's settings, prints the users and their session cookies

def create_users(count: int, snapshot_rows: int) -> dict:
    """`count` users with a session each, plus one user owning `snapshot_rows` orders."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.utils.crypto import get_random_string

    user_model = get_user_model()
    users = [user_model(username=f"live{number}") for number in range(count + 1)]
    for user in users:
        user.set_unusable_password()  # no hasher run: 5,000 users in a second
    users = user_model._default_manager.bulk_create(users)
    store, backend = SessionStore(), settings.AUTHENTICATION_BACKENDS[0]
    sessions = [store.get_model_class()(
        session_key=get_random_string(32), expire_date=store.get_expiry_date(),
        session_data=store.encode({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: backend,
                                   HASH_SESSION_KEY: user.get_session_auth_hash()})) for user in users]
    store.get_model_class()._default_manager.bulk_create(sessions)
    cookies = [[user.pk, f"{settings.SESSION_COOKIE_NAME}={session.session_key}"]
               for user, session in zip(users, sessions, strict=True)]
    owner = cookies.pop()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO shop_order (customer_id) SELECT %s FROM generate_series(1, %s)",
                       [owner[0], snapshot_rows])
    return {"users": cookies, "snapshot_owner": owner}


# -- `client`: one socket per user, subscribed; reports the change frames it received

class LiveTab(WebsocketClient):
    """One tab: subscribes once open; `live` is set by the snapshot's last page."""

    def __init__(self, url: str, origin: str, cookie: str, on_frame):
        super().__init__(*upgrade_request(url, origin, cookie), on_frame)
        self.lost = False

    def connection_lost(self, exc) -> None:
        self.lost = True
        super().connection_lost(exc)


class Tabs:
    """The sockets of one client process and what they received."""

    def __init__(self, sockets: list[list]):
        self.sockets = sockets  # [user, url, origin, cookie]
        self.tabs: list[LiveTab] = []
        self.arrivals: list[list] = []  # [user, pk, received]
        self.snapshots: dict[int, list] = {}  # user -> [rows, first page at, done at]
        self.problems: list[str] = []
        self.retries = 0  # connections tried again
        self._live: dict[int, asyncio.Future] = {}

    def on_frame(self, user: int):
        def handle(data: bytes, received: float) -> None:
            frame = orjson.loads(data)
            kind = frame.get("type")
            if kind == "change":
                self.arrivals.append([user, frame["row"]["id"], received])
            elif kind == "snapshot":
                seen = self.snapshots.setdefault(user, [0, received, None])
                seen[0] += len(frame["rows"])
                if frame.get("done"):
                    seen[2] = received
                    if not self._live[user].done():
                        self._live[user].set_result(None)
            else:
                self.problems.append(data.decode()[:200])
        return handle

    async def open_all(self) -> int:
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        results = await asyncio.gather(*(self._open(gate, *socket) for socket in self.sockets),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                self.problems.append(f"{type(result).__name__}: {result}"[:200])
        return sum(result is None for result in results)

    async def _open(self, gate: asyncio.Semaphore, user: int, url: str, origin: str, cookie: str) -> None:
        """Opens the tab and waits for its view to be live; a refused or reset connection is tried
        again (as the JavaScript client does), at most OPEN_ATTEMPTS times."""
        loop = asyncio.get_running_loop()
        self._live[user] = loop.create_future()
        parts = urllib.parse.urlsplit(url)
        async with gate:
            for attempt in range(1, OPEN_ATTEMPTS + 1):
                try:
                    _, tab = await loop.create_connection(
                        lambda: LiveTab(url, origin, cookie, self.on_frame(user)), parts.hostname, parts.port)
                    await asyncio.wait_for(tab.opened, 60)
                    break
                except (OSError, TimeoutError):
                    if attempt == OPEN_ATTEMPTS:
                        raise
                    self.retries += 1
                    await asyncio.sleep(0.5 * attempt)
            self.tabs.append(tab)
            tab.transport.write(client_frame(TEXT, SUBSCRIBE))
            await asyncio.wait_for(self._live[user], 120)

    def lost(self) -> int:
        return sum(tab.lost for tab in self.tabs)

    def close(self) -> None:
        for tab in self.tabs:
            tab.close()


async def client_main() -> None:
    """stdin: the job ({"sockets": [...]}) on the first line, then commands: `count`, `stop`.
    stdout: one JSON line per answer."""
    raise_open_files()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tabs = Tabs(json.loads(await reader.readline())["sockets"])
    started = time.monotonic()
    ready = await tabs.open_all()
    # This process's collector pauses (5,000 sockets' objects) are not the server's latency: the
    # servers under test collect as usual.
    gc.collect()
    gc.freeze()
    gc.disable()
    answer({"ready": ready, "seconds": round(time.monotonic() - started, 1), "problems": tabs.problems[:5],
            "retries": tabs.retries})
    while command := (await reader.readline()).decode().strip():
        if command == "count":
            answer({"received": len(tabs.arrivals), "lost": tabs.lost()})
        elif command == "stop":
            answer({"arrivals": tabs.arrivals, "snapshots": tabs.snapshots, "problems": tabs.problems[:20],
                    "lost": tabs.lost()})
            break
    tabs.close()
    await asyncio.sleep(1.0)  # the close frames go out before the process ends


def answer(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class ClientProcess:
    """A `client` subprocess of `module` (this one's, or bench.fanout's: the same driving), over
    its stdin and stdout."""

    def __init__(self, sockets: list[list], module: str = "bench.live"):
        self.sockets, self.module = sockets, module
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> dict:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "client", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=256 * 1024 * 1024)
        self.process.stdin.write(json.dumps({"sockets": self.sockets}).encode() + b"\n")
        return await self._answer(READY_TIMEOUT)

    async def ask(self, command: str) -> dict:
        self.process.stdin.write(command.encode() + b"\n")
        return await self._answer(60.0)

    async def _answer(self, seconds: float) -> dict:
        line = await asyncio.wait_for(self.process.stdout.readline(), seconds)
        if not line:
            raise RuntimeError(f"{self.module} client exited with {await self.process.wait()}")
        return json.loads(line)

    async def end(self) -> None:
        """Waits for the process to close its sockets and exit (after `stop`), else kills it."""
        if self.process is None:
            return
        if not self.process.stdin.is_closing():
            self.process.stdin.close()  # its command loop ends
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# -- the measurements

def cpu_seconds(processes) -> float:
    total = 0.0
    for process in processes:
        times = psutil.Process(process.pid).cpu_times()
        total += times.user + times.system
    return total


async def write(database_url: str, customers: list[int], rate: float, seconds: float) -> dict:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.live", "write", database_url, str(rate), str(seconds), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=256 * 1024 * 1024)
    out, _ = await asyncio.wait_for(process.communicate(json.dumps(customers).encode()), seconds + 120)
    if process.returncode != 0:
        raise RuntimeError(f"bench.live write exited with {process.returncode}")
    return json.loads(out)


def sockets_for(stack: WebStack, users: list[list]) -> list[list[list]]:
    """Each client process's sockets: one per user, to its own daphne process."""
    return [[[user, f"ws://127.0.0.1:{port}/ws/live/", f"http://127.0.0.1:{port}", cookie] for user, cookie in users]
            for port in stack.ports[:CLIENT_PROCESSES]]


async def phase(stack: WebStack, database_url: str, users: list[list], rate: float, seconds: float) -> dict:
    """Every user's tabs subscribed, then `rate` changes/s for `seconds`, spread over the users."""
    daphnes = stack.processes[:len(stack.ports)]
    clients = [ClientProcess(sockets) for sockets in sockets_for(stack, users)]
    try:
        started = time.monotonic()
        opened = await asyncio.gather(*(client.start() for client in clients))
        ready_seconds = time.monotonic() - started
        # Steady state, not the connection storm: opening 10,000 sockets grows each daphne to about
        # a million objects, and the collector's full passes on the way (up to 0.8 s each) end
        # after the last socket is open.
        await settle(daphnes, busy=0.5)
        idle_before = cpu_seconds(daphnes)
        await asyncio.sleep(IDLE_SECONDS)
        idle_cores = (cpu_seconds(daphnes) - idle_before) / IDLE_SECONDS
        before, started = cpu_seconds(daphnes), time.monotonic()
        customers = [user for user, _ in users]
        random.Random(len(customers)).shuffle(customers)  # each user in turn, in no particular order
        window = [time.time()]
        written = await write(database_url, customers, rate, seconds)
        window.append(time.time())
        expected = len(written["commits"]) * len(clients)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            counts = await asyncio.gather(*(client.ask("count") for client in clients))
            if sum(count["received"] for count in counts) >= expected:
                break
            await asyncio.sleep(0.1)
        busy_seconds, cpu = time.monotonic() - started, cpu_seconds(daphnes) - before
        reports = await asyncio.gather(*(client.ask("stop") for client in clients))
    finally:
        await asyncio.gather(*(client.end() for client in clients))
    result = tally(written["commits"], reports, len(clients))
    result.update(subscriptions=sum(o["ready"] for o in opened), wanted=len(users) * len(clients),
                  ready_seconds=round(ready_seconds, 1), retries=sum(o["retries"] for o in opened),
                  problems=[p for o in opened for p in o["problems"]][:5],
                  achieved_rate=round(len(written["commits"]) / written["seconds"], 1),
                  idle_cores=round(idle_cores, 3), cpu_s=round(cpu, 2), busy_s=round(busy_seconds, 2),
                  writes_from=round(window[0], 1), writes_to=round(window[1], 1),
                  cpu_ms_per_change=round(cpu * 1000 / max(1, len(written["commits"])), 3),
                  marginal_cpu_ms_per_change=round((cpu - idle_cores * busy_seconds) * 1000
                                                   / max(1, len(written["commits"])), 3))
    return result


def tally(commits: list[list], reports: list[dict], tabs_per_user: int) -> dict:
    """Delivered (each row once to each of its customer's tabs), latency from the commit, and
    frames that reached another user (whatever their number)."""
    by_pk = {pk: (committed, customer) for pk, committed, customer in commits}
    delivered, wrong, latencies = set(), 0, []
    for number, report in enumerate(reports):
        for user, pk, received in report["arrivals"]:
            committed, customer = by_pk.get(pk, (None, None))
            if customer != user:
                wrong += 1
            elif (number, pk) not in delivered:
                delivered.add((number, pk))
                latencies.append(received - committed)
    latencies.sort()
    ms = lambda value: None if value is None else round(value * 1000, 2)  # noqa: E731
    expected = len(commits) * tabs_per_user
    return {"written": len(commits), "delivered_ratio": round(len(delivered) / expected, 5) if expected else None,
            "wrong_user": wrong, "p50_ms": ms(percentile(latencies, 0.5)), "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(latencies[-1] if latencies else None),
            "lost_sockets": sum(report["lost"] for report in reports),
            "other_frames": [p for report in reports for p in report["problems"]][:5]}


async def snapshot_round(stack: WebStack, owner: list) -> dict:
    """One new tab of the user who owns the snapshot rows: subscribe -> the last snapshot page."""
    tabs = Tabs([[owner[0], f"ws://127.0.0.1:{stack.port}/ws/live/", stack.base, owner[1]]])
    gate = asyncio.Semaphore(1)
    try:
        sent = time.time()
        await asyncio.wait_for(tabs._open(gate, *tabs.sockets[0]), 120)
        rows, first, done = tabs.snapshots[owner[0]]
    finally:
        tabs.close()
    return {"rows": rows, "first_page_ms": (first - sent) * 1000, "live_ms": (done - sent) * 1000}


async def measure(stack: WebStack, database_url: str, made: dict, sizes: Sizes) -> dict:
    users, daphnes = made["users"], stack.processes[:len(stack.ports)]
    await settle(daphnes)
    rounds = [await snapshot_round(stack, made["snapshot_owner"]) for _ in range(SNAPSHOT_ROUNDS)]
    live_ms = statistics.median(r["live_ms"] for r in rounds)
    progress(f"snapshot of {rounds[0]['rows']} rows live in {live_ms:.0f} ms")
    small = await phase(stack, database_url, users[:sizes.small_users], sizes.rate, sizes.seconds)
    progress(f"small phase: {small}")
    await settle(daphnes)
    full = await phase(stack, database_url, users[:sizes.users], sizes.rate, sizes.seconds)
    progress(f"full phase: {full}")
    return {
        "live_subscriptions": full["subscriptions"], "live_subscriptions_wanted": full["wanted"],
        "live_rate": sizes.rate, "live_seconds": sizes.seconds, "live_achieved_rate": full["achieved_rate"],
        "live_delivered_ratio": full["delivered_ratio"], "live_subscribers_p50_ms": full["p50_ms"],
        "live_subscribers_p99_ms": full["p99_ms"], "live_subscribers_max_ms": full["max_ms"],
        "live_wrong_user_deliveries": full["wrong_user"] + small["wrong_user"],
        "live_ready_seconds": full["ready_seconds"],
        "live_small_subscriptions": small["subscriptions"], "live_small_delivered_ratio": small["delivered_ratio"],
        "live_small_p99_ms": small["p99_ms"],
        "live_cpu_ms_per_change": full["cpu_ms_per_change"], "live_small_cpu_ms_per_change": small["cpu_ms_per_change"],
        "live_cost_ratio": round(full["cpu_ms_per_change"] / small["cpu_ms_per_change"], 2),
        "live_marginal_cost_ratio": round(full["marginal_cpu_ms_per_change"] / small["marginal_cpu_ms_per_change"], 2),
        "live_idle_cores": full["idle_cores"], "live_small_idle_cores": small["idle_cores"],
        "live_snapshot_rows": rounds[0]["rows"], "live_snapshot_ms": round(live_ms, 1),
        "live_snapshot_first_page_ms": round(statistics.median(r["first_page_ms"] for r in rounds), 1),
        "live_snapshot_rows_per_s": round(rounds[0]["rows"] / (live_ms / 1000)),
        "live_phases": {"small": small, "full": full},
    }


async def settle(daphnes, seconds: float = 60.0, busy: float = 0.1) -> None:
    """Until the daphnes are about idle (the last phase's sockets closed, the listener's start
    replayed): two half-seconds in a row under `busy` cores each, at most `seconds`."""
    deadline, quiet = time.monotonic() + seconds, 0
    while time.monotonic() < deadline and quiet < 2:
        before = cpu_seconds(daphnes)
        await asyncio.sleep(0.5)
        quiet = quiet + 1 if cpu_seconds(daphnes) - before < busy * 0.5 * len(daphnes) else 0


def progress(line: str) -> None:
    print(f"live: {line}"[:2000], file=sys.stderr, flush=True)


def make_users(env: dict, sizes: Sizes) -> dict:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "bench.live", "users", str(sizes.users), str(sizes.snapshot_rows)],
                         cwd=ROOT, env=env, check=True, capture_output=True, timeout=300).stdout
    return json.loads(out)


def forget_layer(prefix: str) -> None:
    """The Redis keys of the bench's own channel-layer prefix."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def live_figures(database_url: str, quick: bool, sizes: Sizes | None = None) -> dict:
    """The live rows on a migrated database of the bench's own (Redis must be reachable)."""
    sizes = sizes or (QUICK if quick else FULL)
    raise_open_files()
    stack = WebStack(database_url, "redis", servers=CLIENT_PROCESSES, login=False)
    made = make_users(stack.env, sizes)
    started = time.monotonic()
    try:
        with stack:
            results = asyncio.run(measure(stack, database_url, made, sizes))
    finally:
        forget_layer(stack.env["CHANNEL_LAYER_PREFIX"])
    results["live_bench_seconds"] = round(time.monotonic() - started)
    return results


def main() -> None:
    command = sys.argv[1]
    if command == "users":
        print(json.dumps(create_users(int(sys.argv[2]), int(sys.argv[3]))))
    elif command == "client":
        asyncio.run(client_main())
    elif command == "write":
        from bench.load import write_orders

        url, rate, seconds = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
        started = time.perf_counter()
        commits = write_orders(url, rate, seconds, json.load(sys.stdin))
        print(json.dumps({"seconds": round(time.perf_counter() - started, 3), "commits": commits}))


if __name__ == "__main__":
    main()
