"""Sending notifications from Django code, on Django's own connection, so a notify made
inside transaction.atomic() is sent on commit and dropped on rollback."""

import json
import re

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections

from .exceptions import InvalidChannelError, PayloadTooLarge

# PostgreSQL refuses payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,63}")


def validate_channel(channel: str) -> str:
    if not isinstance(channel, str) or not CHANNEL_PATTERN.fullmatch(channel):
        raise InvalidChannelError(
            f"invalid channel name {channel!r}: use 1 to 63 letters, digits, '_', '-', '.' or ':'"
        )
    return channel


def encode_payload(payload) -> str:
    if isinstance(payload, str):
        text = payload
    elif isinstance(payload, dict | list):
        text = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    else:
        raise TypeError(f"payload must be a dict, a list or a str, not {type(payload).__name__}")
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(size, MAX_PAYLOAD_BYTES)
    if "\x00" in text:
        raise ValueError("payload must not contain NUL characters")
    return text


def notify(channel: str, payload="", *, using: str = "default") -> None:
    """Send `payload` (dict or list as JSON, str as is) on `channel`."""
    channel, text = validate_channel(channel), encode_payload(payload)
    with connections[using].cursor() as cursor:
        # pg_notify takes the channel as a value: nothing is interpolated into SQL.
        cursor.execute("SELECT pg_notify(%s, %s)", [channel, text])


anotify = sync_to_async(notify)
