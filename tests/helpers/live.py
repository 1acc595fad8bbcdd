"""Shared pieces for the live streams' tests: a websocket client that keeps each subscription's
view as docs/live.md tells a client to, a Server-Sent Events client, users with sessions (and
their loss of rights), orders written from another thread."""

import asyncio
import functools
import json

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


def deactivate(user_id):
    get_user_model().objects.filter(pk=user_id).update(is_active=False)


def log_out(user_id):
    from django.contrib.sessions.models import Session

    doomed = [s.pk for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(user_id)]
    Session.objects.filter(pk__in=doomed).delete()


class EventStream:
    """A client of /live/<stream>/ as Server-Sent Events, over a plain socket."""

    def __init__(self, reader, writer, status):
        self.reader, self.writer, self.status = reader, writer, status

    @classmethod
    async def open(cls, port, path, cookie=None, last_event_id=None):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if last_event_id:
            lines.append(f"Last-Event-ID: {last_event_id}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return cls(reader, writer, int(head.split(b" ", 2)[1]))

    async def event(self, wait=10.0) -> dict:
        """The next SSE event as {"event", "id", "data"} (chunked transfer lines are skipped)."""
        fields = {}
        async with asyncio.timeout(wait):
            while True:
                line = (await self.reader.readline()).decode().rstrip("\r\n")
                if line.startswith(("event: ", "id: ", "data: ")):
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif line == "" and "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                    return fields

    def close(self):
        self.writer.close()
