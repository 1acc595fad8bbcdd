"""A watched model is served on the database DATABASE_ROUTERS write it to (`migrate --database`,
`listen_notify --database`: tests/e2e/test_several_databases.py; what no listener can serve:
tests/unit/test_routed_models.py). `migrate --database` of an alias that is only another's
direct alias sets up nothing there, saying so."""

import subprocess
import sys

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from tests.helpers import support


@pytest.fixture
def second_database(db):
    """A real second database on the same server, dropped afterwards."""
    with support.scratch_database("analytics") as name:
        yield name


def test_migrate_of_a_direct_alias_sets_up_nothing_there(tmp_path, second_database):
    """An alias that only reaches another's database directly (PGNOTIFY["DIRECT"]) has no watched
    model routed to it: set up as a database of its own it would lose its triggers. `migrate
    --database` of it says so in one line and leaves the triggers alone."""
    (tmp_path / "direct_settings.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        f"DATABASES = {{**DATABASES, 'direct': {{**DATABASES['default'], 'NAME': {second_database!r}}}}}"
        "  # noqa: F405\n"
        "PGNOTIFY = {**PGNOTIFY, 'DIRECT': {'default': 'direct'}}  # noqa: F405\n")
    env = support.process_env(DJANGO_SETTINGS_MODULE="direct_settings", PYTHONPATH=str(tmp_path))
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": second_database}) as conn:
        conn.execute("CREATE SCHEMA pgnotify_marker")  # the database is not empty: nothing dropped it
    migrate = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "migrate", "--database", "direct",
                              "--noinput", "--skip-checks"], cwd=support.ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    assert ("  pgnotify: database 'direct' is the direct alias of 'default': `migrate --database default` sets up "
            "pgnotify there") in migrate.stdout.splitlines()
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": second_database}) as conn:
        assert conn.execute("SELECT to_regclass('shop_order') IS NOT NULL").fetchone() == (True,)  # migrated there
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgnotify%'").fetchone() == (0,)
