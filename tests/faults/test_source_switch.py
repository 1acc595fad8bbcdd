"""Switching PGNOTIFY["SOURCE"] under one listener name loses nothing, in both directions, with
writers committing between each `migrate` and the next listener's start; losses past retention
are said with their range, in the state notice and in `check`. The switches run on a database of
their own on the test server (PostgreSQL 15 and 18 in CI); the invalidated slot on a private
PostgreSQL (max_slot_wal_keep_size is set there, never on the shared server)."""

import subprocess

import psycopg
import pytest

from tests.helpers.faults import PrivateServer
from tests.helpers.sources import source_env
from tests.helpers.support import ManagedProcess, database_url_for_tests, scratch_database

pytestmark = pytest.mark.slow


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ManagedProcess.command(), *args], env=env, capture_output=True, text=True, timeout=120)


def insert(url: str, count: int = 3) -> set[int]:
    """Rows committed by a writer, one transaction each."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0]
                for _ in range(count)}


def listener(env: dict, name: str) -> ManagedProcess:
    process = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", "--name", name, env=env)
    process.wait_for_line(": live", timeout=30, stream="stderr")
    return process


def order_pks(process: ManagedProcess) -> set[int]:
    return {line["payload"]["pk"] for line in process.json_lines()
            if line.get("channel") == "orders" and isinstance(line.get("payload"), dict)}


def receive(process: ManagedProcess, pks: set[int], timeout: float = 30) -> None:
    process.wait_for(lambda _: pks <= order_pks(process), timeout=timeout)


@pytest.fixture
def server(tmp_path):
    server = PrivateServer(tmp_path / "pgdata")
    yield server
    server.stop()


@pytest.fixture
def switch_database(db):
    with scratch_database("switch") as name:
        yield database_url_for_tests().rsplit("/", 1)[0] + "/" + name


def test_switching_sources_back_and_forth_loses_nothing(switch_database):
    url = switch_database
    notify, wal = source_env("notify", DATABASE_URL=url), source_env("wal", DATABASE_URL=url)
    name = "switching"
    assert manage(notify, "migrate", "--noinput", "-v", "0").returncode == 0
    committed, delivered = set(), set()

    def run(env, *before_live):
        process = listener(env, name)
        try:
            live = insert(url)
            committed.update(live)
            receive(process, committed - delivered)
        finally:
            process.stop()
        delivered.update(order_pks(process))
        assert "publication \"pgnotify\" does not exist" not in "\n".join(process.stderr_lines)
        return process

    run(notify)
    committed |= insert(url)  # the NOTIFY listener stopped: logged by the triggers
    assert manage(wal, "migrate", "--noinput", "-v", "0").returncode == 0
    committed |= insert(url)  # between migrate and the WAL listener's first start: in the slot
    run(wal)
    committed |= insert(url)  # the WAL listener stopped: in the slot
    # Its slot holds changes and nothing reads it: migrate refuses in one line, saying what to do.
    refused = manage(notify, "migrate", "--noinput", "-v", "0")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "holds 3 changes not handed on yet" in refused.stderr and f"--name {name}" in refused.stderr
    committed |= insert(url)  # the triggers are in place already
    # Done as it says: the WAL listener running, migrate hands over.
    process = listener(wal, name)
    try:
        receive(process, committed - delivered)
        switched = manage(notify, "migrate", "--noinput", "-v", "0")
        assert switched.returncode == 0, switched.stderr
    finally:
        process.stop()
    delivered |= order_pks(process)
    committed |= insert(url)  # between migrate and the NOTIFY listener's start
    run(notify)
    committed |= insert(url)
    # The second switch to wal under the same name: no slot older than the publication, no loop.
    assert manage(wal, "migrate", "--noinput", "-v", "0").returncode == 0
    committed |= insert(url)
    run(wal)
    assert committed <= delivered, f"lost: {sorted(committed - delivered)}"
    # A slot left over after a switch to NOTIFY, and a position older than the retention: `check` says so.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('pgnotify_leftover', 'pgoutput')")
        assert manage(notify, "migrate", "--noinput", "-v", "0").returncode != 0  # a slot of no known name
        conn.execute("UPDATE pgnotify_listener SET updated_at = now() - interval '30 days' WHERE name = %s", [name])
    checked = manage(notify, "check", "--database", "default")
    assert "(pgnotify.W041) Replication slot pgnotify_leftover is left over" in checked.stderr
    assert f"(pgnotify.W042) The position of listener '{name}'" in checked.stderr
    assert "the oldest event kept is id" in checked.stderr


def test_a_live_slot_invalidated_is_reported_with_the_lost_range(server):
    url = server.create_database("pgnotify_lost")
    env = source_env("wal", DATABASE_URL=url)
    assert manage(env, "migrate", "--noinput", "-v", "0").returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        conn.execute("SELECT pg_reload_conf()")
    process = listener(env, "live-lost")
    try:
        # A transaction open across more WAL than the limit pins the slot behind it: a checkpoint
        # invalidates the slot of the live listener.
        with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as admin:
            writer.execute("INSERT INTO shop_order DEFAULT VALUES")
            for _ in range(4):
                admin.execute("SELECT pg_switch_wal()")
                admin.execute("INSERT INTO shop_order DEFAULT VALUES")
            admin.execute("CHECKPOINT")
            writer.commit()
        process.wait_for_line(": behind_retention", timeout=30, stream="stderr")
        after = insert(url, 1)
        receive(process, after)
    finally:
        process.stop()
    notice = next(line for line in process.stderr_lines if "behind_retention" in line)
    assert "was invalidated" in notice and "the changes committed from LSN" in notice and "are lost" in notice
    # Invalidated while nobody listens: `check` warns until its listener runs again.
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(4):
            conn.execute("INSERT INTO shop_order DEFAULT VALUES")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
        assert conn.execute("SELECT wal_status FROM pg_replication_slots").fetchone()[0] == "lost"
    assert "(pgnotify.W040) Replication slot" in manage(env, "check", "--database", "default").stderr
