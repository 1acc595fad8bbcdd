"""Shared pieces for the live streams' tests: a websocket client that keeps each subscription's
view as docs/live.md tells a client to, users with sessions, orders written from another thread."""

import asyncio
import functools

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from notifyproject.shop.models import Order
from tests.helpers.web import in_thread
from tests.helpers.wsclient import WebSocket


def session_cookie(username: str, active: bool = True) -> tuple[int, str]:
    """A user (created) and a logged-in session cookie for them."""
    user = get_user_model().objects.create_user(username, password=f"pw-{username}", is_active=active)
    client = Client()
    client.force_login(user)
    return user.pk, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def db(function, *args, **kwargs):
    """ORM code from an async test, in a thread of its own."""
    call = functools.update_wrapper(functools.partial(function, *args, **kwargs), function)
    return await asyncio.to_thread(in_thread, call)


class View:
    """One subscription's rows as a client keeps them; a repeat or a change of a row it does not
    hold is an error (`strict`), as is anything after an error frame."""

    def __init__(self, strict: bool = True):
        self.rows: dict = {}
        self.position = None
        self.done = False
        self.frames: list[dict] = []
        self.strict = strict

    def apply(self, frame: dict) -> None:
        self.frames.append(frame)
        kind = frame["type"]
        if kind == "snapshot":
            for row in frame["rows"]:
                assert row["id"] not in self.rows, f"snapshot repeats row {row['id']}"
                self.rows[row["id"]] = row
            self.done = frame["done"]
        elif kind == "change":
            pk, op = frame["row"]["id"], frame["op"]
            if op == "INSERT":
                assert not self.strict or pk not in self.rows, f"INSERT of row {pk} already in the view"
                self.rows[pk] = frame["row"]
            elif op == "UPDATE":
                assert not self.strict or pk in self.rows, f"UPDATE of row {pk} not in the view"
                self.rows[pk] = frame["row"]
            else:
                assert not self.strict or pk in self.rows, f"DELETE of row {pk} not in the view"
                self.rows.pop(pk, None)
        elif kind == "resync":
            self.rows, self.done = {}, False
        if "position" in frame:
            self.position = frame["position"]


class LiveSocket:
    """A /ws/live/ connection; frames are sorted into one View per subscription id."""

    def __init__(self, socket: WebSocket):
        self.socket = socket
        self.views: dict[str, View] = {}
        self.errors: list[dict] = []

    @classmethod
    async def connect(cls, port: int, cookie: str | None) -> "LiveSocket":
        return cls(await WebSocket.connect(port, "/ws/live/", cookie))

    async def subscribe(self, sub_id: str, stream: str = "my-orders", wait_snapshot: bool = True,
                        strict: bool = True, **extra) -> View:
        self.views[sub_id] = View(strict)
        await self.socket.send_json({"type": "subscribe", "id": sub_id, "stream": stream, **extra})
        if wait_snapshot:
            await self.until(lambda: self.views[sub_id].done)
        return self.views[sub_id]

    async def receive(self, wait: float = 10.0) -> dict:
        frame = await self.socket.receive_json(wait)
        if frame["type"] == "error":
            self.errors.append(frame)
        elif frame.get("id") in self.views:
            self.views[frame["id"]].apply(frame)
        else:
            raise AssertionError(f"frame for no subscription: {frame}")
        return frame

    async def until(self, condition, wait: float = 10.0) -> None:
        async with asyncio.timeout(wait):
            while not condition():
                await self.receive(wait)

    async def close(self) -> None:
        await self.socket.close()


def order_rows(customer_id: int, **filters) -> dict:
    """What a fresh snapshot holds: the customer's orders with the stream's fields, by id."""
    fields = ["id", "number", "status", "quantity", "total", "created_at"]
    rows = Order.objects.filter(customer_id=customer_id, **filters).values(*fields)
    return {row["id"]: row for row in rows}


def same_rows(view: View, expected: dict) -> bool:
    """The view holds the expected rows (compared on the fields whose text is unambiguous)."""
    if set(view.rows) != set(expected):
        return False
    return all(view.rows[pk]["status"] == row["status"] and view.rows[pk]["number"] == row["number"]
               and view.rows[pk]["quantity"] == row["quantity"] for pk, row in expected.items())
