"""The chat's websocket consumer: glue between a browser and the chat's rules and presence."""

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError

from ...exceptions import one_line
from ...web import fanout, rights
from ...web.daphne import Connection
from ...web.guarded import GuardedConsumer
from ...web.layers import dispatch
from . import presence
from . import rules as chat
from .rules import ChatInputError, chat_group

logger = logging.getLogger(__name__)

NOT_FOUND = 4404  # no such room (a close code a browser can read, as rights.FORBIDDEN)
# Where a room message keeps its frame, serialised and framed once for every consumer of the
# room in this process (the fan-out hands them all the same message).
FRAME_KEY = "_pgnotify_chat_frame"


class ChatConsumer(GuardedConsumer):
    """`/ws/chat/<room>/`: history on connect, then the room's messages, joins, leaves and users.

    Messages are not sent to the group from here: they are stored, and come back to every
    consumer of the room (this one included) through PostgreSQL and the listener.

    The room's messages reach a process once, through its fan-out (pgnotify.web.fanout, as the
    dashboards'): one channel-layer subscription per room and process, not one channel per
    socket; each message's frame is serialised and framed once and written straight to every
    socket of the room (under daphne). A consumer's presence row is keyed by an id of its own.

    Whatever ends the consumer (a disconnect, an error in a handler, the server cancelling it),
    it leaves the room: group membership, presence row and heartbeat go with it (pgnotify.web.guarded).
    """

    # Room messages come through the process's fan-out, not a channel per socket (channels'
    # stubs allow only a str).
    channel_layer_alias = None  # type: ignore[assignment]
    group = None
    heartbeat_task = None
    closed = False
    connection: Connection | None = None  # under daphne: frames written straight to the socket
    # Room messages that arrive while the history is read and sent: they follow it.
    pending: list | None = None

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        self.room = kwargs.get("room", "")
        user = self.scope.get("user")
        if kwargs.get("rest") != "/" or not chat.valid_room(self.room):
            await self.refuse(NOT_FOUND)
            return
        if user is None or not user.is_authenticated:
            await self.refuse(rights.FORBIDDEN)
            return
        self.user_id, self.username = user.pk, user.get_username()
        self.limiter = chat.RateLimiter()
        self.users_as_of = 0.0
        self.presence_key = f"chat.{uuid.uuid4().hex}"
        self.layer = get_channel_layer()
        self.group = chat_group(self.room)
        self.pending, self.history_ids = [], set()
        rights.watch(self)
        # Subscribe to the room before reading history, so nothing falls between the two.
        self.connection = (await fanout.join(self, self.layer, self.group, accept=self.accept)).connection(self)
        frames = await database_sync_to_async(chat.history)(self.room)
        self.history_ids = {frame["id"] for frame in frames}
        for frame in frames:
            await self.send_frame(frame)
        pending, self.pending = self.pending, None
        for message in pending:
            await getattr(self, get_handler_name(message))(message)
        joined = await database_sync_to_async(presence.join)(self.room, self.presence_key, self.username)
        await self.announce(f"{self.username} joined" if joined else None)
        self.heartbeat_task = asyncio.create_task(self.heartbeat())

    async def disconnect(self, code):
        self.closed = True
        await super().disconnect(code)

    async def leave(self) -> None:
        """Leaves the room once, whatever fails: each step is attempted."""
        await super().leave()
        group, self.group = self.group, None
        if group is None:
            return
        if self.heartbeat_task is not None:
            self.heartbeat_task.cancel()
        await fanout.leave(self, self.layer, group)  # the last one of the process ends the subscription
        try:
            left = await database_sync_to_async(presence.leave)(self.presence_key)
            await self.announce(f"{self.username} left" if left else None, group)
        except Exception as error:  # the row ages out by itself (presence.EXPIRY)
            logger.warning("chat presence of %s in %s not removed: %s", self.username, self.room, one_line(error))

    async def receive(self, text_data=None, bytes_data=None):
        try:
            text = chat.parse_message(text_data)
        except ChatInputError as error:
            await self.send_error(str(error))
            return
        if not self.limiter.accept():
            await self.send_error(f"slow down: at most {chat.RATE_LIMIT} messages per second")
            return
        try:
            await database_sync_to_async(chat.store)(self.room, self.user_id, self.username, text)
        except DatabaseError as error:
            logger.warning("chat message in room %s not stored: %s", self.room, one_line(error))
            await self.send_error("message not sent: the database is unavailable, try again")

    # -- group messages

    async def chat_message(self, event):
        if not self.held(event) and event["id"] not in self.history_ids:  # else sent with the history
            await self.send_shared(event, ("type", "id", "room", "user", "message", "ts"))

    async def chat_system(self, event):
        if not self.held(event):
            await self.send_shared(event, ("type", "room", "message", "ts"))

    async def chat_users(self, event):
        if not self.held(event) and event["as_of"] >= self.users_as_of:  # else overtaken by a newer list
            self.users_as_of = event["as_of"]
            await self.send_shared(event, ("type", "room", "users"))

    def held(self, event) -> bool:
        """Whether `event` waits for the history to be sent (it follows it, from connect())."""
        if self.pending is None:
            return False
        self.pending.append(event)
        return True

    # -- helpers

    async def announce(self, notice: str | None, group: str | None = None) -> None:
        """Sends the join or leave notice (if any) and the room's new user list to the room."""
        group = group or self.group
        assert group is not None, "announced outside a room"
        if notice:
            await dispatch.group_send(self.layer, group, {
                "type": "chat.system", "room": self.room, "message": notice,
                "ts": datetime.now(UTC).isoformat(),
            })
        users, as_of = await database_sync_to_async(presence.users)(self.room)
        await dispatch.group_send(self.layer, group, {
            "type": "chat.users", "room": self.room, "users": users, "as_of": as_of,
        })

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(presence.HEARTBEAT)
            try:
                await database_sync_to_async(presence.heartbeat)(self.presence_key)
            except DatabaseError as error:
                logger.warning("chat presence heartbeat failed: %s", one_line(error))

    async def send_frame(self, frame: dict) -> None:
        await self.send_text(json.dumps(frame, separators=(",", ":")))

    async def send_shared(self, message: dict, keys: tuple) -> None:
        """A room message's frame: serialised and framed once, on the first of the process's
        consumers it reaches, and kept in the message (the same object reaches them all)."""
        shared = message.get(FRAME_KEY)
        if shared is None:
            text = json.dumps({key: message[key] for key in keys}, separators=(",", ":"))
            prepared = self.connection.protocol.factory.prepareMessage(text.encode()) if self.connection else None
            shared = message[FRAME_KEY] = (text, prepared)
        await self.send_text(*shared)

    async def send_text(self, text: str, prepared=None) -> None:
        if self.closed:
            return
        connection = self.connection
        try:
            if connection is not None and connection.open():
                # As the dashboards' fan-out does: one send() for the frame, framed once.
                connection.write(prepared or connection.protocol.factory.prepareMessage(text.encode()))
            else:
                await self.send(text_data=text)
        except Exception as error:  # the socket closed meanwhile (daphne: "send on a closed protocol")
            self.closed = True
            logger.debug("chat frame not sent to a closed socket: %s", one_line(error))

    async def send_error(self, message: str) -> None:
        await self.send_frame({"type": "error", "message": message})
