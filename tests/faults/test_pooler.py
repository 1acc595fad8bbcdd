"""Behind a transaction-pooling PgBouncer (docs/operations.md): a listener whose session
cannot LISTEN refuses to start in one line, holding nothing; with PGNOTIFY["DIRECT"] the writers,
`migrate` and `check` go through the pooler and the listener's sessions go direct, and nothing is lost."""

import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.helpers.faults import order_events, parse_output
from tests.helpers.support import ManagedProcess, database_url_for_tests, process_env, start_listener

DIRECT = 'PGNOTIFY["DIRECT"]'
_LOCK_HELD = """
    SELECT count(*) FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND classid = ((hashtextextended(%(key)s, 0) >> 32) & 4294967295)::oid
       AND objid = (hashtextextended(%(key)s, 0) & 4294967295)::oid
"""


def insert_orders(url: str, count: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0]
                for _ in range(count)]


def refusal_lines(process: ManagedProcess) -> list[str]:
    return [line for line in process.stderr_lines if DIRECT in line]


@pytest.mark.slow
def test_a_listener_behind_a_transaction_pooler_refuses_in_one_line_and_holds_no_lock(pgbouncer):
    name = f"pooled-{uuid.uuid4().hex[:8]}"
    pooled = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", "--name", name,
                            env=process_env(DATABASE_URL=pgbouncer.url))
    try:
        returncode = pooled.proc.wait(30)
    except subprocess.TimeoutExpired:
        returncode = None  # still running: it took the session for one that can LISTEN
    finally:
        pooled.stop()
    stderr = "\n".join(pooled.stderr_lines)
    assert returncode not in (None, 0), stderr
    assert len(refusal_lines(pooled)) == 1, stderr
    assert "Traceback" not in stderr and ": live" not in stderr, stderr
    assert pooled.stdout_lines == []
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        assert conn.execute(_LOCK_HELD, {"key": f"pgnotify.listener:{name}"}).fetchone()[0] == 0
    # A direct listener of the same name is not kept waiting as a standby.
    direct = start_listener("--name", name, ready_timeout=10)
    try:
        assert not any(": standby" in line for line in direct.stderr_lines)
    finally:
        direct.stop()


@pytest.mark.slow
def test_writers_and_migrate_through_the_pooler_listener_direct_loses_nothing(pgbouncer):
    name = f"direct-{uuid.uuid4().hex[:8]}"
    env = process_env(DATABASE_URL=pgbouncer.url, DIRECT_DATABASE_URL=database_url_for_tests())
    migrate = ManagedProcess("migrate", "--no-input", env=env)
    assert migrate.proc.wait(120) == 0, migrate.stderr_lines
    migrate.stop()
    written: list[int] = []
    listener = start_listener("--name", name, env=env)
    try:
        written += insert_orders(pgbouncer.url, 2)
        listener.wait_for(lambda lines: {e["pk"] for e in order_events(parse_output(lines)[0])} >= set(written),
                          timeout=10)
    finally:
        listener.kill()
    written += insert_orders(pgbouncer.url, 3)  # while no listener runs
    restarted = start_listener("--name", name, env=env)
    try:
        written += insert_orders(pgbouncer.url, 2)
        restarted.wait_for(lambda lines: {e["pk"] for e in order_events(parse_output(lines)[0])} >= set(written[2:]),
                           timeout=10)
    finally:
        restarted.stop()
    replayed = [e["pk"] for e in order_events(parse_output(restarted.stdout_lines)[0]) if e["replayed"]]
    assert set(written[2:5]) <= set(replayed)


@pytest.mark.slow
def test_check_database_reports_a_listener_alias_behind_a_transaction_pooler(pgbouncer):
    check = ManagedProcess("check", "--database", "default", env=process_env(DATABASE_URL=pgbouncer.url))
    returncode = check.proc.wait(60)
    check.stop()
    lines = [line for line in check.stderr_lines if "pgnotify.E051" in line]
    assert returncode != 0 and len(lines) == 1 and DIRECT in lines[0], check.stderr_lines
    # With PGNOTIFY["DIRECT"] the same check passes.
    direct = ManagedProcess("check", "--database", "default",
                            env=process_env(DATABASE_URL=pgbouncer.url, DIRECT_DATABASE_URL=database_url_for_tests()))
    assert direct.proc.wait(60) == 0, direct.stderr_lines
    direct.stop()


LAYER_SCRIPT = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("pooled", channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    while layer.listener_task_is_running is None:
        await asyncio.sleep(0.01)  # receive() makes it on its first step
    await asyncio.wait_for(layer.listener_task_is_running.wait(), 10)
    await layer.group_send("pooled", {"type": "hello", "text": "through the pooler"})
    try:
        print("received", (await asyncio.wait_for(receiving, 8))["text"])
    except TimeoutError:
        print("nothing received")
    await layer.close()

asyncio.run(main())
"""


@pytest.mark.slow
def test_the_postgres_channel_layer_listens_direct_behind_a_transaction_pooler(pgbouncer):
    """Web processes use the pooler; the layer's LISTEN session goes to PGNOTIFY["DIRECT"] (a LISTEN
    through a transaction pooler hears nothing, and consumers would never receive)."""
    env = process_env(DATABASE_URL=pgbouncer.url, DIRECT_DATABASE_URL=database_url_for_tests(), REDIS_URL="",
                      DJANGO_SETTINGS_MODULE="notifyproject.settings")
    done = subprocess.run([sys.executable, "-c", LAYER_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["received through the pooler"], done.stderr
