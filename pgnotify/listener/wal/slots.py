"""Logical replication slots, one per listener name and database, and what they retain.

A slot keeps every WAL segment its consumer has not confirmed: a slot nobody reads keeps WAL
until the disk is full (unless max_slot_wal_keep_size invalidates it first). So each slot's
retained bytes and the time of its last confirmed position are shown (statistics, Prometheus,
`pgnotify_slots`), and a retired name's slot can be dropped.
"""

import hashlib
import re
from dataclasses import dataclass

import psycopg
from psycopg import errors

PUBLICATION = "pgnotify"
SLOT_PREFIX = "pgnotify_"
# The listener's confirmed position, in pgnotify_listener under this prefix and the slot's name.
POSITION_PREFIX = "wal:"

_INFO = """
    SELECT s.slot_name, s.active_pid, s.confirmed_flush_lsn::text, s.wal_status,
           pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
           extract(epoch FROM now() - p.updated_at)::float8
      FROM pg_replication_slots s
      LEFT JOIN pgnotify_listener p ON p.name = %(prefix)s || s.slot_name
     WHERE s.database = current_database() AND s.plugin = 'pgoutput'
"""
_CREATE = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')"
_SAVE = """
    INSERT INTO pgnotify_listener (name, snapshot, updated_at) VALUES (%s, %s, now())
    ON CONFLICT (name) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at
"""


@dataclass
class SlotInfo:
    slot: str
    active_pid: int | None
    confirmed_lsn: str | None
    wal_status: str | None  # reserved, extended, unreserved, lost (invalidated)
    retained_bytes: int | None
    # Seconds since a listener last recorded its confirmed position (None: never).
    confirmed_age_s: float | None

    @property
    def invalidated(self) -> bool:
        return self.wal_status == "lost"

    def as_dict(self) -> dict:
        return {"slot": self.slot, "active": self.active_pid is not None, "wal_status": self.wal_status,
                "retained_bytes": self.retained_bytes,
                "confirmed_age_s": None if self.confirmed_age_s is None else round(self.confirmed_age_s, 1)}


def slot_name(listener_name: str, database: str) -> str:
    """The slot of a listener name: readable, unique per database (slots are per cluster)."""
    readable = re.sub(r"[^a-z0-9_]", "_", listener_name.lower())[:40]
    digest = hashlib.sha256(f"{database}\0{listener_name}".encode()).hexdigest()[:8]
    return f"{SLOT_PREFIX}{readable}_{digest}"


async def slot_info(conn: psycopg.AsyncConnection, slot: str) -> SlotInfo | None:
    cursor = await conn.execute(_INFO + " AND s.slot_name = %(slot)s", {"prefix": POSITION_PREFIX, "slot": slot})
    row = await cursor.fetchone()
    return SlotInfo(*row) if row else None


async def create_slot(conn: psycopg.AsyncConnection, slot: str) -> bool:
    """Create the slot at the current position; False when it exists already.

    PostgreSQL waits for the transactions running at that moment to end first."""
    try:
        await conn.execute(_CREATE, [slot])
    except errors.DuplicateObject:
        return False
    return True


async def drop_slot(conn: psycopg.AsyncConnection, slot: str) -> bool:
    """Drop the slot (it must not be in use); False when there was none."""
    try:
        await conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    except errors.UndefinedObject:
        return False
    await conn.execute("DELETE FROM pgnotify_listener WHERE name = %s", [POSITION_PREFIX + slot])
    return True


async def save_position(conn: psycopg.AsyncConnection, slot: str, lsn: str) -> None:
    """Record when the slot's position was last confirmed (what `confirmed_age_s` tells)."""
    await conn.execute(_SAVE, [POSITION_PREFIX + slot, lsn])


def list_slots(conn: psycopg.Connection) -> list[SlotInfo]:
    """pgnotify's slots in the current database (sync: for the management command)."""
    rows = conn.execute(_INFO + " AND s.slot_name LIKE 'pgnotify\\_%%' ORDER BY s.slot_name",
                        {"prefix": POSITION_PREFIX}).fetchall()
    return [SlotInfo(*row) for row in rows]


def drop_slot_sync(conn: psycopg.Connection, slot: str) -> bool:
    try:
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    except errors.UndefinedObject:
        return False
    conn.execute("DELETE FROM pgnotify_listener WHERE name = %s", [POSITION_PREFIX + slot])
    return True
