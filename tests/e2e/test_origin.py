"""The websocket origin check under a real daphne: scheme, host and port must be the site's own.

Cookies are not scoped by port, so a page of another local application (`http://localhost:9999`)
must not get an authenticated dashboard socket."""

import asyncio

import pytest
from django.conf import settings
from django.test import Client

from tests.helpers.support import process_env
from tests.helpers.web import Daphne, layer_env, make_user
from tests.helpers.wsclient import Closed, Refused, WebSocket

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]


def staff_cookie() -> str:
    client = Client()
    client.force_login(make_user("boss", staff=True))
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def answer(port: int, cookie: str, origin: str, host: str | None = None, headers: dict | None = None):
    """101 when the dashboard socket opens and stays open, else the HTTP status or close code."""
    async def run():
        try:
            socket = await WebSocket.connect(port, "/ws/dashboard/", cookie, origin=origin, host=host,
                                             headers=headers)
        except Refused as refused:
            return refused.status
        try:
            await socket.receive(wait=1.0)
            return 200  # a frame: open
        except Closed as closed:
            return closed.code
        except TimeoutError:
            return 101
        finally:
            socket.abort()
            await asyncio.sleep(0)

    return asyncio.run(run())


def test_the_origin_must_have_the_sites_own_scheme_host_and_port():
    daphne = Daphne(process_env(**layer_env("postgres"))).wait_ready()
    try:
        cookie, port = staff_cookie(), daphne.port
        own = f"http://127.0.0.1:{port}"
        assert answer(port, cookie, own) == 101
        assert answer(port, cookie, own + "/") == 101
        refused = {
            "another port": "http://127.0.0.1:9999",
            "another local name": f"http://localhost:{port}",
            "https instead of http": f"https://127.0.0.1:{port}",
            "no port (80)": "http://127.0.0.1",
            "a foreign site": "http://evil.example",
            "null": "null",
            "not a URL": "127.0.0.1",
        }
        answers = {name: answer(port, cookie, origin) for name, origin in refused.items()}
        print(f"\n{answers}")
        # 403 from the check; autobahn itself answers 400 to an Origin that is not a URL.
        assert all(code == 403 for name, code in answers.items() if name != "not a URL"), answers
        assert answers["not a URL"] in (400, 403)
        # A Host that ALLOWED_HOSTS does not list is refused, even with a matching origin.
        assert answer(port, cookie, f"http://evil.example:{port}", host=f"evil.example:{port}") == 403
        # localhost is allowed when the page itself is on localhost.
        assert answer(port, cookie, f"http://localhost:{port}", host=f"localhost:{port}") == 101
        # Behind a TLS proxy without SECURE_PROXY_SSL_HEADER, the page's https origin is not the request's.
        assert answer(port, cookie, f"https://127.0.0.1:{port}", headers={"X-Forwarded-Proto": "https"}) == 403
    finally:
        daphne.stop()


def test_behind_a_tls_proxy_the_origin_is_https_when_the_proxy_says_so():
    env = process_env(**layer_env("postgres"), SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    daphne = Daphne(env).wait_ready()
    try:
        cookie, port = staff_cookie(), daphne.port
        forwarded = {"X-Forwarded-Proto": "https"}
        assert answer(port, cookie, f"https://127.0.0.1:{port}", headers=forwarded) == 101
        assert answer(port, cookie, f"http://127.0.0.1:{port}", headers=forwarded) == 403
        assert answer(port, cookie, f"https://127.0.0.1:{port}") == 403  # not through the proxy
    finally:
        daphne.stop()


def test_trusted_origins_are_accepted():
    env = process_env(**layer_env("postgres"), CSRF_TRUSTED_ORIGINS="https://app.example.com")
    daphne = Daphne(env).wait_ready()
    try:
        cookie, port = staff_cookie(), daphne.port
        assert answer(port, cookie, "https://app.example.com") == 101
        assert answer(port, cookie, "https://other.example.com") == 403
    finally:
        daphne.stop()
