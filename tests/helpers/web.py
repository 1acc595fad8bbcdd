"""Shared pieces for tests of the web side: a real daphne server on a free port, the channel
layers to run it with, a headless Chromium through Playwright, and logging in.

Its fixtures (`browser`, `web_stack`, ...) reach every test module: tests/conftest.py loads it as a plugin.
"""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import connections

from tests.helpers.support import ROOT, ManagedProcess, free_port, process_env, start_listener
from tests.helpers.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
STAFF_PASSWORD = "staff-password-1"



def redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def layer_env(layer: str) -> dict:
    """Environment for processes of one test run: which channel layer, with a prefix of its own."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if layer == "redis":
        if not redis_reachable():
            pytest.skip(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}")
        return {"REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/3", "CHANNEL_LAYER_PREFIX": prefix}
    return {"REDIS_URL": "", "CHANNEL_LAYER_PREFIX": prefix}


class Daphne:
    """`daphne notifyproject.asgi:application` on 127.0.0.1 and a free port, against the test database."""

    def __init__(self, env: dict, port: int | None = None, args: tuple = ()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", *args, "-b", "127.0.0.1", "-p", str(self.port),
             "notifyproject.asgi:application"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8",
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self):
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 20.0) -> "Daphne":
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.proc.returncode}: {self.lines[-20:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False  # its port is not open yet

        eventually(answers, timeout, what=lambda: f"daphne to answer at {self.url} (its output: {self.lines[-20:]})",
                   interval=0.1)
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)


class WebStack:
    """daphne + `listen_notify` on the test database, sharing one channel layer; `source` is the
    event source both use (PGNOTIFY_SOURCE; the `event_source` fixture sets the database up for it)."""

    def __init__(self, layer: str, source: str = "notify"):
        self.layer = layer
        self.env = process_env(**layer_env(layer), PGNOTIFY_SOURCE=source)
        self.daphne: Daphne | None = None
        self.listener: ManagedProcess | None = None

    def start(self, listener_args=()) -> "WebStack":
        """Start both; a part that fails to start stops what had started (no process outlives it)."""
        try:
            self.daphne = Daphne(self.env)
            self.listener_name = f"web-{uuid.uuid4().hex[:8]}"
            self.listener = start_listener("--name", self.listener_name, *listener_args, env=self.env)
            self.daphne.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        return self.daphne.url

    def restart_daphne(self) -> None:
        """A new daphne on the same port, as after a deploy: browsers must reconnect by themselves."""
        port = self.daphne.port
        self.daphne.stop()
        self.daphne = Daphne(self.env, port=port).wait_ready()

    def stop(self):
        if self.listener:
            self.listener.stop()
        if self.daphne:
            self.daphne.stop()


@pytest.fixture
def postgres_stack(transactional_db):
    """A started WebStack on pgnotify's PostgreSQL channel layer."""
    stack = WebStack("postgres")
    try:
        yield stack.start()
    finally:
        stack.stop()


def in_thread(function, *args, timeout: float = 120.0):
    """Runs ORM code outside the event loop Playwright's sync API keeps in the test's thread."""
    result = []

    def run():
        try:
            result.append(function(*args))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert result, f"{function.__name__} failed (see the thread's traceback above)"
    return result[0]


@pytest.fixture(params=["postgres", "redis"])
def web_stack(request, transactional_db):
    """A started WebStack, once per channel layer (Redis is skipped when unreachable)."""
    stack = WebStack(request.param)
    try:
        yield stack.start()
    finally:
        stack.stop()


def require_chromium() -> None:
    """Debian's Chromium must be there under CI; elsewhere its absence skips the test."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium, or `make browser`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium():
    """Headless Debian Chromium through Playwright's sync API, closed on exit."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium. Missing: the test fails under CI, else it is skipped.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    is open, which async tests of later modules could not share."""
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # plain synchronous ones, so Django's async-safety guard is lifted while the browser runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with chromium() as browser:
            yield browser
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def make_user(username: str, staff: bool = False, password: str = STAFF_PASSWORD):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(
        username=username, password=password, is_staff=staff, is_superuser=staff)


def login(page, base_url: str, username: str, password: str = STAFF_PASSWORD) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/accounts/login/" not in page.url, f"login as {username} failed"


def wait_websocket(page, timeout_ms: float = 10_000) -> None:
    """The page's websocket client sets window.websocketConnected when it is open."""
    page.wait_for_function("window.websocketConnected === true", timeout=timeout_ms)


def terminate_backends(application_name_like: str, datname: str) -> int:
    """pg_terminate_backend of this test database's backends whose application_name matches."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE %s AND pid <> pg_backend_pid()",
            [datname, application_name_like],
        )
        return cursor.fetchone()[0]


@pytest.fixture
async def fresh_channel_layer():
    """The default channel layer, made for this test's event loop and closed after it."""
    from channels.layers import channel_layers, get_channel_layer

    channel_layers.backends.clear()
    layer = get_channel_layer()
    yield layer
    if hasattr(layer, "close"):
        await layer.close()
    channel_layers.backends.clear()
