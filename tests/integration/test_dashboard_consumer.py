"""DashboardConsumer through the project's ASGI application: auth, origin, frames."""

import json
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from notifyproject.asgi import application
from pgnotify.web.consumers import DashboardConsumer
from pgnotify.web.frames import DASHBOARD_GROUP, frame
from pgnotify.web.rights import FORBIDDEN
from tests.helpers.web import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]
ORIGIN = (b"origin", b"http://127.0.0.1")


@database_sync_to_async
def session_cookie(username: str | None, staff: bool = False) -> list:
    if username is None:
        return []
    client = Client()
    client.force_login(make_user(username, staff=staff))
    name = settings.SESSION_COOKIE_NAME
    return [(b"cookie", f"{name}={client.cookies[name].value}".encode())]


async def connect(headers):
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[(b"host", b"127.0.0.1"), *headers])
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.mark.parametrize(("username", "staff"), [(None, False), ("plain", False)])
async def test_anonymous_and_non_staff_users_are_refused_with_4403(username, staff):
    # Accepted, then closed with 4403: a browser sees the code (a refused handshake is 1006 there).
    communicator, connected, _ = await connect([ORIGIN, *await session_cookie(username, staff)])
    assert connected
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": FORBIDDEN}
    await communicator.disconnect(timeout=5)


async def test_a_user_whose_model_has_no_is_staff_is_refused_with_4403():
    # A custom user model need not have is_staff (AbstractBaseUser has none): refused, not a crash.
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"] = SimpleNamespace(pk=1, is_active=True, is_authenticated=True)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": FORBIDDEN}
    await communicator.disconnect(timeout=5)


async def test_staff_user_receives_dashboard_frames():
    communicator, connected, _ = await connect([ORIGIN, *await session_cookie("boss", staff=True)])
    assert connected
    try:
        events = [{"id": 1, "op": "INSERT", "table": "shop_order", "pk": 1}]
        await get_channel_layer().group_send(DASHBOARD_GROUP, frame({"type": "changes", "events": events}))
        received = json.loads(await communicator.receive_from(timeout=5))
        assert received == {"type": "changes", "events": events}
    finally:
        await communicator.disconnect()


async def test_a_foreign_origin_is_refused_even_for_staff():
    cookie = await session_cookie("boss2", staff=True)
    communicator, connected, _ = await connect([(b"origin", b"http://evil.example"), *cookie])
    assert not connected
    await communicator.disconnect()


def test_dashboard_page_is_for_staff_and_others_are_sent_to_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/dashboard/")
    client.force_login(make_user("plain2"))
    assert client.get("/dashboard/").status_code == 302
    client.force_login(make_user("boss3", staff=True))
    page = client.get("/dashboard/").content.decode()
    assert "Table activity" in page and "/ws/dashboard/" in page and "pgnotify/dashboard.js" in page


def test_home_page_links_to_everything_and_login_page_renders(client):
    home = client.get("/").content.decode()
    for link in ("/dashboard/", "/chat/lobby/", "/admin/", "/accounts/login/"):
        assert f'href="{link}' in home
    assert 'name="username"' in client.get("/accounts/login/").content.decode()
    script = client.get("/static/pgnotify/dashboard.js")  # served by WhiteNoise, no collectstatic needed
    script.close()
    assert script.status_code == 200
