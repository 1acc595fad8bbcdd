"""The web stack under measurement: daphne and `listen_notify` as subprocesses on 127.0.0.1,
one channel layer (Redis with a prefix of its own, or PostgreSQL), and a logged-in staff session."""

import http.cookiejar
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/5"
STAFF_USER, STAFF_PASSWORD = "benchstaff", "bench-staff-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stack_env(database_url: str, layer: str, settings: str = "notifyproject.settings", source: str = "notify") -> dict:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    return {
        **os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": settings, "PGNOTIFY_SOURCE": source,
        "REDIS_URL": REDIS_URL if layer == "redis" else "", "CHANNEL_LAYER_PREFIX": prefix,
        "CACHE_KEY_PREFIX": prefix, "DEBUG": "0", "PGNOTIFY_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
    }


def create_staff_user(env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", STAFF_USER,
                    "--email", "bench@example.com"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**env, "DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD})


class WebStack:
    """daphne (`servers` processes, one port each) + (optionally) `listen_notify`, logged in once
    as the staff user (unless `login` is False); use as a context manager."""

    def __init__(self, database_url: str, layer: str, listener: bool = True,
                 settings: str = "notifyproject.settings", source: str = "notify", servers: int = 1,
                 login: bool = True):
        self.env = stack_env(database_url, layer, settings, source)
        self.layer, self.with_listener, self.with_login = layer, listener, login
        self.ports = [free_port() for _ in range(servers)]
        self.port = self.ports[0]
        self.base = f"http://127.0.0.1:{self.port}"
        self.logs = Path(tempfile.mkdtemp(prefix="pgnotify-bench-"))
        self.processes: list[subprocess.Popen] = []
        self.cookie = ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=log)
        process.log = log
        self.processes.append(process)
        return process

    def __enter__(self) -> "WebStack":
        for number, port in enumerate(self.ports):
            self._spawn(f"daphne-{number}" if number else "daphne",
                        ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "notifyproject.asgi:application"])
        if self.with_listener:
            self._spawn("listener", ["manage.py", "listen_notify", "--name", f"bench-{uuid.uuid4().hex[:8]}",
                                     "--stats-interval", "0"])
        for port in self.ports:
            self._wait_ready(f"http://127.0.0.1:{port}")
        if self.with_login:
            self.cookie = self._login()
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.log.close()

    def _wait_ready(self, base: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[1:3]} exited with {process.returncode}; logs in {self.logs}")
            try:
                with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)  # the port is not open yet
        raise TimeoutError(f"daphne not ready after {timeout}s; logs in {self.logs}")

    def _login(self) -> str:
        """Logs in through /accounts/login/ like a browser; returns the Cookie header to reuse."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(f"{self.base}/accounts/login/", timeout=10).read()
        csrf = next(c.value for c in jar if c.name == "csrftoken")
        form = urllib.parse.urlencode({"username": STAFF_USER, "password": STAFF_PASSWORD,
                                       "csrfmiddlewaretoken": csrf, "next": "/dashboard/"}).encode()
        opener.open(urllib.request.Request(f"{self.base}/accounts/login/", data=form,
                                           headers={"Referer": f"{self.base}/accounts/login/"}), timeout=10).read()
        cookies = {c.name: c.value for c in jar}
        if "sessionid" not in cookies:
            raise RuntimeError(f"login as {STAFF_USER} failed")
        return "; ".join(f"{name}={value}" for name, value in cookies.items())

    @property
    def dashboard_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/dashboard/"
