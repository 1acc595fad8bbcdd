"""Helpers for tests that run real processes against the test database."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.db import connection
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
MACHINE_REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_tests() -> str:
    """DATABASE_URL of the database the tests use (pytest-django's test database)."""
    s = connection.settings_dict
    host = quote(str(s["HOST"] or "127.0.0.1"), safe="")
    password = f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else ""
    return f"postgresql://{quote(s['USER'] or 'postgres')}{password}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


@contextlib.contextmanager
def scratch_database(suffix: str):
    """A database of its own on the test server, named after the test database and `suffix`,
    made afresh and dropped afterwards with its replication slots; yields its name."""
    from pgnotify.connection import listener_conninfo
    from tests.helpers.sources import drop_database_slots

    name = f"{connection.settings_dict['NAME']}_{suffix}_{os.getpid()}"
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as admin:
        drop_database_slots(name)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            drop_database_slots(name)
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def process_env(**extra) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "PYTHONUNBUFFERED": "1", **extra}
    return env


class ManagedProcess:
    """A `manage.py` subprocess (of this project, or of the project in `cwd` run by `python`) whose
    output lines are collected by threads for waiting on."""

    @staticmethod
    def command() -> list[str]:
        """The command line of this project's `manage.py`, to which a command and its arguments are added."""
        return [sys.executable, str(ROOT / "manage.py")]

    def __init__(self, *args, env=None, stdin=None, python=sys.executable, cwd=ROOT, manage=True):
        self.args = args
        self.python, self.cwd, self.manage = python, cwd, manage
        self.proc = subprocess.Popen(
            self._command(),
            cwd=cwd, env=env or process_env(), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._new = threading.Condition()
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout_lines), (self.proc.stderr, self.stderr_lines))
        ]
        for pump in self._pumps:
            pump.start()

    def _command(self) -> list[str]:
        return [str(self.python), *([str(Path(self.cwd) / "manage.py")] if self.manage else []), *self.args]

    def _pump(self, stream, sink):
        with stream:
            for line in stream:
                with self._new:
                    sink.append(line.rstrip("\n"))
                    self._new.notify_all()

    def wait_for(self, predicate, timeout=10.0, stream="stdout"):
        """Wait until predicate(lines) is truthy; returns its value."""
        lines = self.stdout_lines if stream == "stdout" else self.stderr_lines
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                result = predicate(lines)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout}s waiting on {stream} of {' '.join(self.args)}\n"
                        f"stdout: {self.stdout_lines[-20:]}\nstderr: {self.stderr_lines[-20:]}"
                    )
                self._new.wait(min(remaining, 0.2))

    def wait_for_line(self, text, timeout=10.0, stream="stdout"):
        return self.wait_for(lambda lines: next((line for line in lines if text in line), None), timeout, stream)

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in list(self.stdout_lines) if line.startswith("{")]

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self):
        for pump in self._pumps:
            pump.join(5)
        if self.proc.stdin:
            self.proc.stdin.close()


def start_listener(*args, ready_timeout=20.0, env=None) -> ManagedProcess:
    """`listen_notify --json` against the test database, returned once it is live."""
    listener = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", *args, env=env)
    try:
        listener.wait_for_line("live", timeout=ready_timeout, stream="stderr")
    except BaseException:
        listener.stop()  # not left running (and reaped) behind a failed test
        raise
    return listener
