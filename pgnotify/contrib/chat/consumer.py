"""The chat's websocket consumer: glue between a browser and the chat's rules and presence."""

import asyncio
import json
import logging
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from django.db import DatabaseError

from ...exceptions import one_line
from ...web import rights
from ...web.guarded import GuardedConsumer
from . import presence
from . import rules as chat
from .rules import ChatInputError, chat_group

logger = logging.getLogger(__name__)

NOT_FOUND = 4404  # no such room (a close code a browser can read, as rights.FORBIDDEN)


class ChatConsumer(GuardedConsumer):
    """`/ws/chat/<room>/`: history on connect, then the room's messages, joins, leaves and users.

    Messages are not sent to the group from here: they are stored, and come back to every
    consumer of the room (this one included) through PostgreSQL and the listener.

    Whatever ends the consumer (a disconnect, an error in a handler, the server cancelling it),
    it leaves the room: group membership, presence row and heartbeat go with it (pgnotify.web.guarded).
    """

    group = None
    heartbeat_task = None
    closed = False

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
        self.group = chat_group(self.room)
        # Join the group before reading history, so nothing falls between the two.
        await self.channel_layer.group_add(self.group, self.channel_name)
        rights.watch(self)
        await self.accept()
        frames = await database_sync_to_async(chat.history)(self.room)
        self.history_ids = {frame["id"] for frame in frames}
        for frame in frames:
            await self.send_frame(frame)
        joined = await database_sync_to_async(presence.join)(self.room, self.channel_name, self.username)
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
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception as error:  # the layer is away: its group expiry removes the membership
            logger.warning("chat membership of %s in %s not removed: %s", self.username, self.room, one_line(error))
        try:
            left = await database_sync_to_async(presence.leave)(self.channel_name)
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
        if event["id"] in self.history_ids:
            return  # committed while this consumer read the history: already sent
        await self.send_frame({key: event[key] for key in ("type", "id", "room", "user", "message", "ts")})

    async def chat_system(self, event):
        await self.send_frame({key: event[key] for key in ("type", "room", "message", "ts")})

    async def chat_users(self, event):
        if event["as_of"] < self.users_as_of:
            return  # an older list overtaken by a newer one
        self.users_as_of = event["as_of"]
        await self.send_frame({"type": "chat.users", "room": event["room"], "users": event["users"]})

    # -- helpers

    async def announce(self, notice: str | None, group: str | None = None) -> None:
        """Sends the join or leave notice (if any) and the room's new user list to the room."""
        group = group or self.group
        assert group is not None, "announced outside a room"
        if notice:
            await self.channel_layer.group_send(group, {
                "type": "chat.system", "room": self.room, "message": notice,
                "ts": datetime.now(UTC).isoformat(),
            })
        users, as_of = await database_sync_to_async(presence.users)(self.room)
        await self.channel_layer.group_send(group, {
            "type": "chat.users", "room": self.room, "users": users, "as_of": as_of,
        })

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(presence.HEARTBEAT)
            try:
                await database_sync_to_async(presence.heartbeat)(self.channel_name)
            except DatabaseError as error:
                logger.warning("chat presence heartbeat failed: %s", one_line(error))

    async def send_frame(self, frame: dict) -> None:
        if self.closed:
            return
        try:
            await self.send(text_data=json.dumps(frame, separators=(",", ":")))
        except Exception as error:  # the socket closed meanwhile (daphne: "send on a closed protocol")
            self.closed = True
            logger.debug("chat frame not sent to a closed socket: %s", one_line(error))

    async def send_error(self, message: str) -> None:
        await self.send_frame({"type": "error", "message": message})
