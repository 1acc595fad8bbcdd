"""One active listener per name, whatever its event source: an advisory lock held by its session.

The other processes of that name are standbys: they retry the lock and say who holds it, from
the holder's session (pg_locks and pg_stat_activity). A listener's sessions carry its process id
and host name at the end of their application_name, so a standby can name them.
"""

import os
import re
import socket
from datetime import UTC, datetime

import psycopg

_TRY = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
# A bigint advisory key shows in pg_locks as its high half (classid) and low half (objid).
_HOLDER = """
    WITH k AS (SELECT hashtextextended(%s, 0) AS key)
    SELECT a.application_name, host(a.client_addr), a.backend_start
      FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid
"""
_PROCESS = re.compile(r" (\d+)@(\S+)$")
HOST = socket.gethostname()[:20]


def application_name(role: str, token: str, name: str) -> str:
    """What a listener's session calls itself: role, token, name, then `pid@host` (cut at 63)."""
    return f"pgnotify {role}{token}{name} {os.getpid()}@{HOST}"[:63]


def _key(name: str) -> str:
    return f"pgnotify.listener:{name}"


async def try_lock(conn: psycopg.AsyncConnection, name: str) -> bool:
    cursor = await conn.execute(_TRY, [_key(name)])
    row = await cursor.fetchone()
    assert row is not None  # a function call returns one row
    return row[0]


async def holder(conn: psycopg.AsyncConnection, name: str) -> str | None:
    """Who holds `name`, in words: "pid 4242 on web-1 (10.0.0.2), connected since ...", or None."""
    cursor = await conn.execute(_HOLDER, [_key(name)])
    row = await cursor.fetchone()
    if row is None:
        return None
    application, address, started = row
    process = _PROCESS.search(application or "")
    who = f"pid {process.group(1)} on {process.group(2)}" if process else f"a session named {application!r}"
    where = f" ({address})" if address else ""
    since = started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(started, datetime) else "?"
    return f"{who}{where}, connected since {since}"
