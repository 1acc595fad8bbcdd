"""Channel-layer group names shared by the listener's handler and the consumers."""

DASHBOARD_GROUP = "pgnotify.dashboard"


def chat_group(room: str) -> str:
    """Group of a chat room; the ChatConsumer joins it, the listener sends `chat.message` to it."""
    return f"pgnotify.chat.{room}"
