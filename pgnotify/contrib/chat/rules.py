"""The chat's rules and storage: room names, what a client may send, history, and the frames.

A message is only ever written to the database here. It reaches the room's websockets the way
every change does: the trigger on `pgnotify_chatmessage` sends it on channel `chat`, the
listener hands it to `handler.ChatRoomSender`, which sends `chat.message` to the room's group.
So every web process connected to the same database and channel layer shares the room.
"""

import json
import re
import time
import unicodedata
from collections import deque

from ...exceptions import PgNotifyError
from .models import ChatMessage

CHAT_CHANNEL = "chat"
CHAT_TABLE = ChatMessage._meta.db_table

ROOM_PATTERN = r"[A-Za-z0-9_-]{1,50}"
HISTORY_SIZE = 50
MAX_LENGTH = 2000
RATE_LIMIT = 10  # accepted messages ...
RATE_WINDOW = 1.0  # ... in any window of this many seconds, per connection
# A frame carrying the longest message, every character escaped (\\uXXXX\\uXXXX), fits; a longer
# one is refused before it is parsed (so a deep nesting never reaches the JSON parser).
MAX_FRAME = 12 * MAX_LENGTH + 100
# Letters and symbols that show nothing, besides whitespace and format characters (category Cf).
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800")


class ChatInputError(PgNotifyError, ValueError):
    """The client's chat frame was refused; the message says why, and goes back in an error frame."""


_room = re.compile(ROOM_PATTERN)


def chat_group(room: str) -> str:
    """Group of a chat room; the ChatConsumer joins it, the listener sends `chat.message` to it."""
    return f"pgnotify.chat.{room}"


def chat_message(event: dict) -> tuple[str, dict] | None:
    """The (group, message) a new chat row's change event turns into, or None for anything else."""
    row = event.get("row") or {}
    if event.get("table") != CHAT_TABLE or event.get("op") != "INSERT" or not row.get("room"):
        return None
    return chat_group(row["room"]), {
        "type": "chat.message",
        "id": row.get("id", event.get("pk")),
        "room": row["room"],
        "user": row.get("username"),
        "message": row.get("message"),
        "ts": row.get("created_at") or event.get("ts"),
    }


def valid_room(room: str) -> bool:
    return bool(_room.fullmatch(room))


def parse_message(text: str | None) -> str:
    """The message text of a client frame `{"message": "..."}`, or ChatInputError."""
    if text is None:
        raise ChatInputError('frames must be JSON text: {"message": "text"}')
    if len(text) > MAX_FRAME:
        raise ChatInputError(f"frame too long: {len(text)} characters, at most {MAX_FRAME}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise ChatInputError('frames must be JSON: {"message": "text"}') from None
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        raise ChatInputError('frames must be a JSON object with a "message" string')
    message = data["message"]
    if len(message) > MAX_LENGTH:
        raise ChatInputError(f"message too long: {len(message)} characters, at most {MAX_LENGTH}")
    if "\x00" in message:
        raise ChatInputError("message contains a NUL character")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. "\\ud800" in the JSON
        raise ChatInputError("message is not valid Unicode text (a lone surrogate)") from None
    if not any(_visible(character) for character in message):
        raise ChatInputError("empty message")
    return message


def _visible(character: str) -> bool:
    return not (character.isspace() or character in INVISIBLE or unicodedata.category(character) in ("Cf", "Cc"))


class RateLimiter:
    """At most `limit` accepted messages in any sliding window of `window` seconds."""

    def __init__(self, limit: int = RATE_LIMIT, window: float = RATE_WINDOW, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._accepted: deque[float] = deque()

    def accept(self) -> bool:
        now = self.clock()
        while self._accepted and now - self._accepted[0] >= self.window:
            self._accepted.popleft()
        if len(self._accepted) >= self.limit:
            return False
        self._accepted.append(now)
        return True


def message_frame(message: ChatMessage, history: bool = False) -> dict:
    frame = {
        "type": "chat.message",
        "id": message.id,
        "room": message.room,
        "user": message.username,
        "message": message.message,
        "ts": message.created_at.isoformat(),
    }
    if history:
        frame["history"] = True
    return frame


def history(room: str, size: int = HISTORY_SIZE) -> list[dict]:
    """The room's last `size` messages as frames, oldest first."""
    latest = ChatMessage.objects.filter(room=room).order_by("-id")[:size]
    return [message_frame(message, history=True) for message in reversed(latest)]


def store(room: str, user_id: int, username: str, text: str) -> int:
    """Saves a message; the trigger then delivers it to the room. Returns its id."""
    return ChatMessage.objects.create(room=room, user_id=user_id, username=username, message=text).id
