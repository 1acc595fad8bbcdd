"""Who is in a chat room, across every web process.

Design: one `ChatPresence` row per open websocket (keyed by the consumer's own id), written
when it connects and deleted when it disconnects, in the database every web process shares.
A row is refreshed every HEARTBEAT seconds and counts only while fresher than EXPIRY, so the
connections of a web process that died without saying goodbye drop out by themselves.

The consumer that changed the room reads the new list and sends it, with the join or leave
notice, to the room's channel-layer group. Each list carries the database time it was read at
(`as_of`); a consumer ignores a list older than one it already passed on, so two joins racing
each other through the layer cannot leave a stale list on screen.
"""

from datetime import timedelta

from django.db import connection
from django.db.models.functions import Now

from .models import ChatPresence

HEARTBEAT = 20.0  # seconds between refreshes of an open connection's row
EXPIRY = timedelta(seconds=3 * HEARTBEAT)


def _now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def users(room: str) -> tuple[list[str], float]:
    """The usernames present in `room`, sorted, and the database time they were read at."""
    as_of = _now()
    names = (
        ChatPresence.objects.filter(room=room, seen_at__gt=as_of - EXPIRY)
        .values_list("username", flat=True).distinct().order_by("username")
    )
    return list(names), as_of.timestamp()


def join(room: str, key: str, username: str) -> bool:
    """Records a connection; True when it is the user's first one in the room (a real join)."""
    ChatPresence.objects.filter(room=room, seen_at__lt=Now() - EXPIRY).delete()
    ChatPresence.objects.update_or_create(
        channel_name=key, defaults={"room": room, "username": username, "seen_at": Now()},
    )
    return _connections(room, username) == 1


def leave(key: str) -> bool:
    """Forgets a connection; True when it was the user's last one in its room (a real leave)."""
    presence = ChatPresence.objects.filter(channel_name=key).first()
    if presence is None:
        return False
    presence.delete()
    return _connections(presence.room, presence.username) == 0


def heartbeat(key: str) -> None:
    ChatPresence.objects.filter(channel_name=key).update(seen_at=Now())


def _connections(room: str, username: str) -> int:
    return ChatPresence.objects.filter(room=room, username=username, seen_at__gt=Now() - EXPIRY).count()
