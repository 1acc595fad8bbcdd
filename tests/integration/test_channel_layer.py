"""The channel layer on PostgreSQL: upstream's defect after a terminated backend, and the fix."""

import asyncio
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from channels_postgres import core as upstream_core
from channels_postgres import db as upstream_db
from django.db import connection

from pgnotify.web.layers.postgres import APPLICATION_NAME, PostgresChannelLayer

pytestmark = pytest.mark.django_db(transaction=True)


def conninfo() -> dict:
    s = connection.settings_dict
    return {"dbname": s["NAME"], "user": s["USER"], "password": s["PASSWORD"] or None,
            "host": s["HOST"] or "127.0.0.1", "port": s["PORT"] or 5432}


async def terminate(where: str, *params) -> int:
    """Terminate this test database's backends matching `where` (never anyone else's)."""
    async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo()) as conn:
        cursor = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND " + where, [conninfo()["dbname"], *params])
        return (await cursor.fetchone())[0]


async def wait_listening(layer) -> None:
    await asyncio.wait_for(layer.listener_task_is_running.wait(), 5)


async def test_upstream_layer_stops_receiving_after_its_listen_backend_is_terminated():
    settings = {**connection.settings_dict, "OPTIONS": {}}
    layer = upstream_core.PostgresChannelLayer(**settings)
    channel = await layer.new_channel()
    try:
        await layer.send(channel, {"type": "before"})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "before"
        assert await terminate("query LIKE 'LISTEN channels_postgres_messages%%'") == 1
        await asyncio.sleep(0.2)  # let the listener task see its connection die
        await layer.send(channel, {"type": "after"})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 1.5)
    finally:
        if upstream_db.connection_pool is not None:
            await upstream_db.connection_pool.close()
            upstream_db.connection_pool = None


async def test_layer_receives_again_after_every_backend_of_it_is_terminated():
    layer = PostgresChannelLayer()
    channel = await layer.new_channel()
    try:
        await layer.group_add("g", channel)
        await layer.group_send("g", {"type": "m", "n": 1})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1

        # Terminate the LISTEN connection and the pool's; send while nobody listens.
        assert await terminate("application_name LIKE %s", APPLICATION_NAME + "%") >= 2
        await layer.group_send("g", {"type": "m", "n": 2})
        await layer.group_send("g", {"type": "m", "n": 3})
        received = [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(2)]
        assert received == [2, 3]
        assert layer.reconnects == 1

        # Live again, and nothing re-read from the table comes twice.
        await layer.group_send("g", {"type": "m", "n": 4})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 4
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.5)
    finally:
        await layer.group_discard("g", channel)
        layer._supervisor.cancel()
        await layer.django_db.close()


@pytest.mark.slow
async def test_layer_receives_again_after_a_database_restart():
    import dj_database_url

    from tests.helpers.faults import PrivateServer
    from tests.helpers.support import ManagedProcess, process_env

    # A directory of its own: pytest's shared temporary root is reset to 0700 by concurrent runs,
    # which the server's own user could then no longer enter.
    directory = Path(tempfile.mkdtemp(prefix="pgnotify-layer-restart-"))
    server = await asyncio.to_thread(PrivateServer, directory / "pgdata")
    layer = None
    try:
        url = await asyncio.to_thread(server.create_database, "layer_restart")
        migrate = ManagedProcess("migrate", "channels_postgres", "--noinput", env=process_env(DATABASE_URL=url))
        assert await asyncio.to_thread(migrate.proc.wait, 60) == 0, migrate.stderr_lines[-10:]
        migrate.stop()

        layer = PostgresChannelLayer(**{**connection.settings_dict, **dj_database_url.parse(url), "OPTIONS": {}})
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        await layer.group_send("g", {"type": "m", "n": 1})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(layer.group_send("g", {"type": "m", "n": 2}), 15)
        assert (await asyncio.wait_for(layer.receive(channel), 15))["n"] == 2
        assert layer.reconnects >= 1
    finally:
        if layer is not None:
            await layer.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(directory, ignore_errors=True)
