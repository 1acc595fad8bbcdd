"""PostgreSQL LISTEN/NOTIFY change-data notifications for Django."""

from .exceptions import InvalidChannelError, PayloadTooLarge, PgNotifyError
from .sending import MAX_PAYLOAD_BYTES, anotify, notify, validate_channel

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "InvalidChannelError",
    "PayloadTooLarge",
    "PgNotifyError",
    "anotify",
    "notify",
    "validate_channel",
]
