import os
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from tests.helpers.support import MACHINE_REDIS, ManagedProcess, start_listener

# Fixtures of the web side (daphne, channel layers, Chromium) for every test module.
pytest_plugins = ["tests.helpers.web"]

# Each directory under tests/ is a tier, and its tests carry its name as a marker (`-m unit`).
TIERS = ("unit", "integration", "e2e", "faults")
# What puts a test on the database: pytest-django's marker or one of these fixtures.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server"}


def pytest_configure(config):
    """pgnotify's own fixtures (pgnotify_capture): pytest loads them by their entry point where
    pgnotify is installed (or a build left its metadata in the checkout), here otherwise."""
    from pgnotify import pytest_plugin

    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "pgnotify")


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier; a unit test that would need the database is an error."""
    tests = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(tests).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in a tier's directory: {', '.join(TIERS)}")
        item.add_marker(tier)
        if tier == "unit" and (item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(item.fixturenames)):
            raise pytest.UsageError(f"{item.nodeid}: a unit test runs without a database (tests/integration then)")


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
    from tests.helpers.sources import use_source

    with use_source(request.param, settings):
        yield request.param


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings):
    """Before the test database is made: without DATABASE_URL, start the embedded PostgreSQL (the
    first test that needs a database does, and only then); drop the replication slots an
    interrupted run left in the test database (PostgreSQL refuses to drop a database that has slots)."""
    from django.db import connection

    from tests.helpers.sources import drop_database_slots

    if not os.environ.get("DATABASE_URL"):
        import dj_database_url

        from notifyproject import embedded_db

        embedded_db.use_unless_configured()
        started = dj_database_url.parse(os.environ["DATABASE_URL"])
        connection.settings_dict.update({key: started[key] for key in ("HOST", "PORT", "USER", "PASSWORD")})
    name = connection.creation._get_test_db_name()
    try:
        drop_database_slots(name)
    except psycopg.OperationalError:
        pass  # no server yet: nothing left behind either
    yield


@pytest.fixture(scope="session")
def django_db_setup(request, django_db_setup):
    """pytest-django's test database, released after the session before it is dropped (PostgreSQL
    refuses while a slot or another session uses it): drop the slots tests made and wait for the
    sessions of the processes they stopped to end. A session that stays is named in the report,
    then ended, so a leak shows as what it is rather than as a failed DROP DATABASE."""
    yield
    from django.db import connection

    from tests.helpers.sources import drop_database_slots, release_database

    name = connection.settings_dict["NAME"]
    drop_database_slots(name)
    connection.close()
    connection.close_pool()
    leftovers = release_database(name)
    if leftovers:
        drop_database_slots(name)  # the slots of the walsenders just ended
        children = [" ".join(child.cmdline()[:4]) for child in psutil.Process().children(recursive=True)]
        plugins = request.config.pluginmanager
        with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
            for line in [f"\nsessions left on {name} after the tests, ended:", *leftovers,
                         f"this process's children still running: {children}"]:
                plugins.get_plugin("terminalreporter").write_line(line, yellow=True)


@pytest.fixture(autouse=True)
def _sessions_named_after_the_test(request, monkeypatch):
    """Connections opened during a test, here or by its subprocesses, carry its name as their
    application_name (unless pgnotify names them): the report above then says whose they are."""
    monkeypatch.setenv("PGAPPNAME", request.node.name[:63])


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
