"""Running tests with either event source: the test database switched to the WAL source (no
change triggers, the publication, replica identity FULL) and back, and its slots dropped."""

import contextlib
import time

import psycopg
from django.db import connection

from pgnotify.schema.publication import sync_publication
from pgnotify.schema.triggers import sync_triggers
from tests.helpers.support import process_env


def server_url(database: str) -> str:
    s = connection.settings_dict
    params = {"host": s["HOST"] or "127.0.0.1", "port": s["PORT"] or 5432, "user": s["USER"] or "postgres",
              "dbname": database}
    if s["PASSWORD"]:
        params["password"] = s["PASSWORD"]
    return psycopg.conninfo.make_conninfo(**params)


def drop_database_slots(database: str, timeout: float = 15.0) -> list[str]:
    """Drop every pgnotify slot of `database`, waiting for the ones still in use to be released."""
    dropped = []
    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while True:
            rows = conn.execute("SELECT slot_name, active FROM pg_replication_slots WHERE database = %s "
                                "AND slot_name LIKE 'pgnotify\\_%%'", [database]).fetchall()
            for slot, active in rows:
                if not active:
                    with contextlib.suppress(psycopg.errors.UndefinedObject, psycopg.errors.ObjectInUse):
                        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                        dropped.append(slot)
            if all(not active for _, active in rows) or time.monotonic() > deadline:
                return dropped
            time.sleep(0.1)


def release_database(database: str, timeout: float = 10.0) -> list[str]:
    """Wait for the sessions still on `database` to end (a stopped process's backend ends a moment
    after it); end the ones that outlast `timeout` and describe them."""
    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while True:
            rows = conn.execute("SELECT pid, backend_type, application_name, client_port, state, backend_start, "
                                "left(query, 200) FROM pg_stat_activity WHERE datname = %s "
                                "AND pid <> pg_backend_pid()", [database]).fetchall()
            if not rows or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pid, *_ in rows:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    return [f"pid {pid} ({kind}, application {app!r}, client port {port}, {state} since {started:%H:%M:%S}): {query}"
            for pid, kind, app, port, state, started, query in rows]


@contextlib.contextmanager
def use_source(source: str, settings):
    """The test database set up for `source` for the duration; its slots dropped after."""
    if source == "notify":
        yield
        return
    original = settings.PGNOTIFY
    settings.PGNOTIFY = {**original, "SOURCE": "wal"}
    sync_triggers()
    sync_publication()
    try:
        yield
    finally:
        settings.PGNOTIFY = original
        sync_triggers()
        sync_publication()
        drop_database_slots(connection.settings_dict["NAME"])


def source_env(source: str, **extra) -> dict:
    """The environment of a listener subprocess using `source`."""
    return process_env(PGNOTIFY_SOURCE=source, **extra)


