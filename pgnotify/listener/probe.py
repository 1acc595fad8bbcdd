"""Proof that a session can LISTEN: a notification sent by another session reaches it in time.

Behind a transaction-pooling PgBouncer the LISTEN runs on a server connection that goes back to
the pool at once: the client receives nothing, while its own notifications (the checkpoint's
marker) may still come back to it. A listener on such a session would say "live", hand on nothing
and record a position over every change. So a listener proves its session first, and refuses it.
"""

import secrets

import psycopg
from psycopg import sql

from ..exceptions import CannotListenError

SEND = "SELECT pg_notify(%s, 'probe')"


def channel() -> str:
    return f"pgnotify_probe_{secrets.token_hex(6)}"


def listen(name: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(name))


def unlisten(name: str) -> sql.Composed:
    return sql.SQL("UNLISTEN {}").format(sql.Identifier(name))


def refusal(seconds: float) -> CannotListenError:
    return CannotListenError(
        f"the listener's session received no notification from another session within {seconds:g} s, so LISTEN "
        "cannot work through it (a transaction-pooling PgBouncer?): map this alias in PGNOTIFY[\"DIRECT\"] to an "
        "alias that reaches the database directly")


def can_listen(conninfo: dict, seconds: float) -> bool:
    """The same proof, synchronous, on two connections of its own (for `manage.py check`)."""
    with psycopg.connect(autocommit=True, **conninfo) as listen_conn, \
            psycopg.connect(autocommit=True, **conninfo) as sender:
        name = channel()
        listen_conn.execute(listen(name))
        sender.execute(SEND, [name])
        return any(n.channel == name for n in listen_conn.notifies(timeout=seconds, stop_after=1))
