import uuid

import psycopg
import pytest
import redis

from tests.support import MACHINE_REDIS, ManagedProcess, start_listener

# Fixtures of the web side (daphne, channel layers, Chromium) for every test module.
pytest_plugins = ["tests.web"]


@pytest.fixture
def listener(transactional_db):
    """A live `listen_notify --json` subprocess on the test database."""
    started: list[ManagedProcess] = []

    def start(*args, **kwargs):
        process = start_listener(*args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(params=["notify", "wal"])
def event_source(request, transactional_db, settings):
    """The test database set up for each event source in turn (PGNOTIFY["SOURCE"], triggers or
    publication); listener subprocesses get it through PGNOTIFY_SOURCE (see `source_env`)."""
    from tests.sources import use_source

    with use_source(request.param, settings):
        yield request.param


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings):
    """Before the test database is made: drop the replication slots an interrupted run left in
    it (PostgreSQL refuses to drop a database that has slots)."""
    from django.db import connection

    from tests.sources import drop_database_slots

    name = connection.creation._get_test_db_name()
    try:
        drop_database_slots(name)
    except psycopg.OperationalError:
        pass  # no server yet: nothing left behind either
    yield


@pytest.fixture(scope="session", autouse=True)
def _no_slots_left(django_db_setup, django_db_blocker):
    """After the session, before the test database is dropped: drop the slots tests made."""
    yield
    from django.db import connection

    from tests.sources import drop_database_slots

    drop_database_slots(connection.settings_dict["NAME"])


@pytest.fixture
def machine_redis():
    """The machine's Redis with a key prefix of this test's, cleaned up after it (skips without Redis)."""
    client = redis.Redis.from_url(MACHINE_REDIS, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()
