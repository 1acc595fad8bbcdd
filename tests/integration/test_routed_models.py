"""A watched model is served on the database DATABASE_ROUTERS write it to (`migrate --database`,
`listen_notify --database`: tests/e2e/test_several_databases.py). What no listener can serve is a
`check` error naming the model and the database (pgnotify.E026): routers whose db_for_write and
allow_migrate disagree (its triggers would not be where its writes go), a database that is not
PostgreSQL, a database where app 'pgnotify' is not migrated. `migrate --database` of an alias
that is only another's direct alias sets up nothing there, saying so."""

import subprocess
import sys

import psycopg
import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from pgnotify import checks
from pgnotify.connection import listener_conninfo
from tests.helpers import support

ROUTED = "notifyproject.shop.models.Order"


class StrictRouter:
    """shop.Order lives on 'analytics' only."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None

    db_for_read = db_for_write

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "shop" and model_name == "order":
            return db == "analytics"
        return None


class WritesOnlyRouter:
    """shop.Order is written to 'analytics'; migrations go everywhere (the router says None)."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None


class MigrateOnlyRouter:
    """shop.Order's table is made only on 'analytics'; writes are not routed."""

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "analytics" if model_name == "order" else None


class NoPgnotifyRouter:
    """shop.Order is on 'analytics', but pgnotify's own tables are kept off it."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default" if app_label == "pgnotify" else None


def routing_errors(router: str, engine: str = "django.db.backends.postgresql") -> list:
    databases = {**settings.DATABASES,
                 "analytics": {**settings.DATABASES["default"], "NAME": "analytics", "ENGINE": engine}}
    with override_settings(DATABASE_ROUTERS=[f"tests.integration.test_routed_models.{router}"], DATABASES=databases):
        saved = connections._settings, connections.__dict__.pop("settings", None)
        connections._settings = None  # the aliases are read again from DATABASES
        try:
            return checks.check_routing()
        finally:
            connections._settings = saved[0]
            connections.__dict__.pop("settings", None)
            if saved[1] is not None:
                connections.__dict__["settings"] = saved[1]
            if hasattr(connections._connections, "analytics"):
                delattr(connections._connections, "analytics")


@pytest.mark.once
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # only the routers read it here
@pytest.mark.parametrize(("router", "engine", "start", "database"), [
    ("MigrateOnlyRouter", "django.db.backends.postgresql", "shop.Order is written to database 'default' "
     "(db_for_write), but its table is made on 'analytics' (allow_migrate)", "'default'"),
    ("StrictRouter", "django.db.backends.sqlite3", "shop.Order is written to database 'analytics' "
     "(DATABASE_ROUTERS), which is not a PostgreSQL database", "'analytics'"),
    ("NoPgnotifyRouter", "django.db.backends.postgresql", "shop.Order is written to database 'analytics', where the "
     "routers do not migrate app 'pgnotify'", "'analytics'"),
])
def test_a_watched_model_no_listener_can_serve_is_a_check_error_naming_it_and_its_database(router, engine, start,
                                                                                           database):
    [error] = routing_errors(router, engine)
    assert error.id == "pgnotify.E026" and "\n" not in error.msg
    assert error.msg.startswith(start) and database in error.msg


@pytest.mark.once
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize("router", ["StrictRouter", "WritesOnlyRouter"])
def test_a_watched_model_routed_to_another_postgresql_database_is_served_there(router):
    """Today's 'several databases': `listen_notify --database analytics` serves it."""
    assert routing_errors(router) == []


@pytest.mark.once
def test_no_router_and_a_router_that_leaves_watched_models_alone_pass():
    assert checks.check_routing() == []
    with override_settings(DATABASE_ROUTERS=["tests.integration.test_routed_models.MigrateOnlyRouter"],
                           PGNOTIFY={**settings.PGNOTIFY, "WATCH": {
                               label: options for label, options in settings.PGNOTIFY["WATCH"].items()
                               if label != "shop.Order"}}):
        assert checks.check_routing() == []


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
