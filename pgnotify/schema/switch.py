"""Switching PGNOTIFY["SOURCE"] at `migrate` without losing a change.

A listener name keeps one event-log position (a snapshot, in pgnotify_listener under the name)
whatever the source: the NOTIFY listener moves it; the WAL listener replays the event log from
it at start and then moves it too. So each switch hands over at a point both sides agree on:

- notify -> wal: the publication first, then a slot for every listener name known (positions
  table), and only then are the change triggers removed. Every change after the slot's start is
  in the slot, every one before it in the event log; the WAL listener replays the log from the
  name's position, then streams the slot, skipping the transactions the log already handed on.
  A slot older than the publication (made before a switch back and forth) cannot be decoded, so
  it is dropped first: the event log holds what it held.
- wal -> notify: the change triggers first; then every slot must have handed on everything up to
  that moment: a running WAL listener is waited for, a stopped one's slot is read without being
  consumed and must hold no change. Then each name's position becomes the snapshot taken after
  the triggers were in place, the publication goes and the slots are dropped. A slot that still
  holds changes makes `migrate` fail, saying how to hand them on first (the triggers stay, so
  nothing is lost meanwhile).
"""

import time

from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from ..exceptions import WalSetupError, one_line
from ..listener.wal.slots import POSITION_PREFIX, PUBLICATION, SLOT_PREFIX, slot_name
from .triggers import SyncResult

HAND_OVER_TIMEOUT = 30.0  # seconds a running WAL listener has to confirm the moment of the switch

_SLOTS = """
    SELECT slot_name, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots
     WHERE database = current_database() AND plugin = 'pgoutput' AND slot_name LIKE %s ORDER BY slot_name
"""
_NAMES = "SELECT name FROM pgnotify_listener WHERE name NOT LIKE %s"
_PUBLICATION = "SELECT count(*) FROM pg_publication WHERE pubname = %s"
# The changes (INSERT, UPDATE, DELETE, TRUNCATE messages) a stopped slot holds up to an LSN, read
# without consuming them.
_PENDING = """
    SELECT count(*) FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, NULL, 'proto_version', '1',
                                                             'publication_names', %s)
     WHERE get_byte(data, 0) IN (73, 85, 68, 84)
"""
_POSITION = """
    INSERT INTO pgnotify_listener (name, snapshot, updated_at) VALUES (%s, %s, now())
    ON CONFLICT (name) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at
"""


def publication_exists(using: str) -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute(_PUBLICATION, [PUBLICATION])
        return bool(cursor.fetchone()[0])


def _slots(cursor) -> list[tuple[str, int | None, str | None]]:
    cursor.execute(_SLOTS, [SLOT_PREFIX.replace("_", "\\_") + "%"])
    return cursor.fetchall()


def _names_by_slot(cursor) -> dict[str, str]:
    """The listener names with an event-log position, by the name of their slot."""
    cursor.execute(_NAMES, [POSITION_PREFIX + "%"])
    database = cursor.connection.info.dbname
    return {slot_name(name, database): name for (name,) in cursor.fetchall()}


def prepare_slots(using: str, fresh_publication: bool) -> SyncResult:
    """notify -> wal: a slot for every known name, made before the triggers go."""
    result = SyncResult()
    if not publication_exists(using):
        return result  # the publication sync said why
    with connections[using].cursor() as cursor:
        existing = {slot for slot, _, _ in _slots(cursor)}
        if fresh_publication:
            for slot, active_pid, confirmed in _slots(cursor):
                if active_pid is None:  # it began before the publication: decoding it would fail for ever
                    cursor.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                    existing.discard(slot)
                    result.append(f"dropped replication slot {slot}: it began (at {confirmed}) before the "
                                  "publication; the event log holds the changes since")
        for slot, name in _names_by_slot(cursor).items():
            if slot not in existing:
                # Waits for the transactions running now to end: every later commit is in the slot.
                try:
                    cursor.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
                except DatabaseError as error:  # no REPLICATION: `migrate` fails in one line, the triggers stay
                    raise WalSetupError(f"could not create replication slot {slot}: {one_line(error)}") from error
                result.append(f"created replication slot {slot} for '{name}' at {cursor.fetchone()[0]}: its "
                              "WAL listener goes on from where its NOTIFY listener stopped")
    return result


def hand_over_slots(using: str) -> dict[str, tuple[str, str]]:
    """wal -> notify, the triggers in place: check that every slot handed on everything up to
    now; returns {slot: (name, snapshot)} whose snapshot becomes the name's position. Raises
    CommandError, with the steps that lose nothing, when a slot still holds changes."""
    with connections[using].cursor() as cursor:
        if not _slots(cursor):
            return {}
        cursor.execute("SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text")
        snapshot, switch_lsn = cursor.fetchone()
        names = _names_by_slot(cursor)
        published = publication_exists(using)
        deadline = time.monotonic() + HAND_OVER_TIMEOUT
        positions = {}
        for slot, _, _ in _slots(cursor):
            name = names.get(slot)
            if name is None:
                raise CommandError(f"replication slot {slot} belongs to no listener name this database knows: "
                                   "start that name's WAL listener once and run migrate again while it runs, or "
                                   f"drop the slot (`manage.py pgnotify_slots --drop {slot}`) if the name is retired")
            if published:
                _wait_until_handed_on(cursor, slot, name, switch_lsn, deadline)
            positions[slot] = (name, snapshot)
    return positions


def _wait_until_handed_on(cursor, slot: str, name: str, switch_lsn: str, deadline: float) -> None:
    steps = (f"start it (PGNOTIFY['SOURCE'] = 'wal', `manage.py listen_notify --name {name}`) and run migrate "
             "again while it runs: the change triggers are in place, so nothing is lost meanwhile")
    while True:
        cursor.execute("SELECT active_pid, confirmed_flush_lsn::text, confirmed_flush_lsn >= %s::pg_lsn "
                       "FROM pg_replication_slots WHERE slot_name = %s", [switch_lsn, slot])
        row = cursor.fetchone()
        if row is None or row[2]:
            return
        active_pid, confirmed, _ = row
        if active_pid is None:
            cursor.execute(_PENDING, [slot, switch_lsn, PUBLICATION])
            pending = cursor.fetchone()[0]
            if not pending:
                return
            raise CommandError(f"replication slot {slot} of '{name}' holds {pending} changes not handed on yet "
                               f"(LSN {confirmed} to {switch_lsn}) and its WAL listener is not running: {steps}")
        if time.monotonic() > deadline:
            raise CommandError(f"the WAL listener of '{name}' did not confirm the switch's LSN {switch_lsn} within "
                               f"{HAND_OVER_TIMEOUT:.0f} s (it is at {confirmed}): run migrate again once it is live")
        time.sleep(0.2)


def retire_slots(using: str, positions: dict[str, tuple[str, str]]) -> SyncResult:
    """wal -> notify, the publication gone: each name's position at the switch, its slot dropped."""
    result = SyncResult()
    with connections[using].cursor() as cursor:
        for slot, (name, snapshot) in positions.items():
            cursor.execute(_POSITION, [name, snapshot])
            _drop(cursor, slot)
            result.append(f"dropped replication slot {slot}: '{name}' goes on from the change triggers' event log")
    return result


def drop_slots(using: str) -> SyncResult:
    """pgnotify uninstalled (`migrate pgnotify zero`): its slots go with it."""
    result = SyncResult()
    with connections[using].cursor() as cursor:
        for slot, _, _ in _slots(cursor):
            _drop(cursor, slot, forget=False)
            result.append(f"dropped replication slot {slot}")
    return result


def _drop(cursor, slot: str, timeout: float = 10.0, forget: bool = True) -> None:
    """Drop a slot, ending the WAL listener that holds it (with the publication gone it stops)."""
    deadline = time.monotonic() + timeout
    while True:
        cursor.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot])
        row = cursor.fetchone()
        if row is None:
            break
        if row[0] is None:
            cursor.execute("SELECT pg_drop_replication_slot(%s)", [slot])
            break
        if time.monotonic() > deadline:
            raise CommandError(f"replication slot {slot} stays in use by pid {row[0]}: stop its WAL listener and "
                               "run migrate again")
        cursor.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        time.sleep(0.2)
    if forget:
        cursor.execute("DELETE FROM pgnotify_listener WHERE name = %s", [POSITION_PREFIX + slot])
