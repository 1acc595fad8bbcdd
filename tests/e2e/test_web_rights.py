"""Rights are checked while a websocket is open, and a refusal is something the page can act on:
real daphne, PostgreSQL and (for the pages) Chromium.

A dashboard whose user loses the right (staff cleared, deactivated, logged out) is closed with
4403 within 5 s; the page then stops reconnecting and links to the log-in page. A chat socket
of a deactivated user closes too."""

import asyncio
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from tests.helpers.support import process_env
from tests.helpers.web import Daphne, chromium, in_thread, layer_env, login, make_user, wait_websocket
from tests.helpers.wsclient import WebSocket

pytestmark = [pytest.mark.once, pytest.mark.django_db(transaction=True)]
LOST_WITHIN = 5.0  # seconds


@pytest.fixture
def daphne():
    server = Daphne(process_env(**layer_env("postgres"))).wait_ready()
    yield server
    server.stop()



def clear_staff(username):
    return get_user_model().objects.filter(username=username).update(is_staff=False)


def deactivate(username):
    return get_user_model().objects.filter(username=username).update(is_active=False)


def delete_sessions(username):
    user = get_user_model().objects.get(username=username)
    doomed = [s.pk for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(user.pk)]
    return Session.objects.filter(pk__in=doomed).delete()[0]


REFUSED_JS = "document.getElementById('live-login') !== null"


@pytest.mark.browser
@pytest.mark.parametrize("lose", [clear_staff, deactivate, delete_sessions], ids=lambda f: f.__name__)
def test_a_dashboard_closes_within_5_s_once_its_user_loses_the_right(daphne, lose):
    in_thread(make_user, "boss", True)
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
        login(page, daphne.url, "boss")
        page.goto(f"{daphne.url}/dashboard/")
        wait_websocket(page)
        opened = []
        page.on("websocket", lambda socket: opened.append(socket.url))
        assert in_thread(lose, "boss") >= 1
        started = time.monotonic()
        page.wait_for_function(REFUSED_JS, timeout=LOST_WITHIN * 1000 + 2000)
        closed_after = time.monotonic() - started
        print(f"\n{lose.__name__}: dashboard closed {closed_after:.2f} s after the right was lost")
        assert closed_after < LOST_WITHIN
        assert page.inner_text("#ws-status") == "forbidden"
        page.wait_for_timeout(3000)  # the page must not reconnect: watch it for a while
        assert opened == []
        assert "/accounts/login/?next=%2Fdashboard%2F" in page.get_attribute("#live-login", "href")


@pytest.mark.browser
def test_after_logout_the_dashboard_stops_retrying_and_offers_to_log_in_again(daphne):
    in_thread(make_user, "boss", True)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        dashboard = context.new_page()
        login(dashboard, daphne.url, "boss")
        dashboard.goto(f"{daphne.url}/dashboard/")
        wait_websocket(dashboard)
        opened = []
        dashboard.on("websocket", lambda socket: opened.append(socket.url))
        other = context.new_page()  # the user logs out in another tab
        other.goto(f"{daphne.url}/")
        with other.expect_navigation():
            other.click("form[action='/accounts/logout/'] button")
        started = time.monotonic()
        dashboard.wait_for_function(REFUSED_JS, timeout=LOST_WITHIN * 1000 + 2000)
        print(f"\nlogout: dashboard closed after {time.monotonic() - started:.2f} s")
        dashboard.wait_for_timeout(3000)
        assert opened == [], "the page went on reconnecting after the logout"
        # The link brings the user back to the dashboard after logging in.
        dashboard.click("#live-login")
        dashboard.wait_for_url(lambda url: "/accounts/login/?next=" in url)
        dashboard.fill("#id_username", "boss")
        dashboard.fill("#id_password", "staff-password-1")
        with dashboard.expect_navigation():
            dashboard.click("button[type=submit]")
        assert dashboard.url.endswith("/dashboard/")
        wait_websocket(dashboard)
        context.close()


@pytest.mark.browser
def test_a_refused_dashboard_page_never_hammers_the_server(daphne):
    # The socket is refused from the start (not staff): the page sees 4403 once and stops.
    in_thread(make_user, "plain", False)
    with chromium() as browser:
        page = browser.new_context().new_page()
        opened = []
        page.on("websocket", lambda socket: opened.append(socket.url))
        login(page, daphne.url, "plain")
        page.goto(f"{daphne.url}/chat/lobby/")
        wait_websocket(page)
        page.evaluate("new window.pgnotify.LiveSocket('/ws/dashboard/', {onFrame: function () {}})")
        page.wait_for_function(REFUSED_JS, timeout=5000)
        page.wait_for_timeout(3000)
        assert [url for url in opened if url.endswith("/ws/dashboard/")] == [f"ws://127.0.0.1:{daphne.port}/ws/dashboard/"]


def test_a_chat_socket_of_a_deactivated_user_closes_within_5_s(daphne):
    user = get_user_model().objects.create_user("dora", password="pw-dora")
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def run():
        socket = await WebSocket.connect(daphne.port, "/ws/chat/lobby/", cookie)
        await socket.receive_until(lambda frame: frame["type"] == "chat.users")
        await asyncio.to_thread(in_thread, deactivate, "dora")
        started = time.monotonic()
        code = await socket.wait_closed(wait=LOST_WITHIN + 2)
        return code, time.monotonic() - started

    code, closed_after = asyncio.run(run())
    print(f"\nchat socket of a deactivated user closed after {closed_after:.2f} s with {code}")
    assert code == 4403 and closed_after < LOST_WITHIN


def test_sockets_of_users_who_keep_their_rights_stay_open(daphne):
    user = get_user_model().objects.create_user("erin", password="pw-erin", is_staff=True)
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def run():
        chat = await WebSocket.connect(daphne.port, "/ws/chat/lobby/", cookie)
        dashboard = await WebSocket.connect(daphne.port, "/ws/dashboard/", cookie)
        with pytest.raises(TimeoutError):  # several checks pass: nothing closes them
            await dashboard.wait_closed(wait=6)
        await chat.receive_until(lambda frame: frame["type"] == "chat.users")
        await chat.send_json({"message": "still here"})
        for socket in (chat, dashboard):
            await socket.close()

    asyncio.run(run())
