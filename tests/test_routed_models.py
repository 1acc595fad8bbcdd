"""A watched model that DATABASE_ROUTERS sends to a database the listener does not serve is a
`check` error naming the model and its database (pgnotify.E026), and `migrate --database` of
such a database attaches nothing there, saying so: its changes would pile up unread."""

import os
import subprocess
import sys

import psycopg
import pytest
from django.conf import settings
from django.test import override_settings
from psycopg import sql

from pgnotify import checks
from pgnotify.connection import listener_conninfo
from tests import support

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


def routing_errors(router: str) -> list:
    databases = {**settings.DATABASES, "analytics": {**settings.DATABASES["default"], "NAME": "analytics"}}
    with override_settings(DATABASE_ROUTERS=[f"tests.test_routed_models.{router}"], DATABASES=databases):
        return checks.check_routing()


@pytest.mark.once
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # only the routers read it here
@pytest.mark.parametrize("router", ["StrictRouter", "WritesOnlyRouter", "MigrateOnlyRouter"])
def test_a_watched_model_routed_elsewhere_is_a_check_error_naming_it_and_its_database(router):
    [error] = routing_errors(router)
    assert error.id == "pgnotify.E026" and "\n" not in error.msg
    assert error.msg.startswith("shop.Order is routed to database 'analytics'") and "'default'" in error.msg


@pytest.mark.once
def test_no_router_and_a_router_that_leaves_watched_models_alone_pass():
    assert checks.check_routing() == []
    with override_settings(DATABASE_ROUTERS=["tests.test_routed_models.StrictRouter"],
                           PGNOTIFY={**settings.PGNOTIFY, "WATCH": {
                               label: options for label, options in settings.PGNOTIFY["WATCH"].items()
                               if label != "shop.Order"}}):
        assert checks.check_routing() == []


@pytest.fixture
def second_database(db):
    """A real second database on the same server, dropped afterwards."""
    name = f"{settings.DATABASES['default']['NAME']}_analytics_{os.getpid()}"
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_check_and_migrate_with_a_real_second_database(tmp_path, second_database):
    (tmp_path / "routed_settings.py").write_text(
        "from notifyproject.settings import *  # noqa: F403\n"
        f"DATABASES = {{**DATABASES, 'analytics': {{**DATABASES['default'], 'NAME': {second_database!r}}}}}"
        "  # noqa: F405\n"
        "DATABASE_ROUTERS = ['routed_router.WritesOnlyRouter']\n")
    (tmp_path / "routed_router.py").write_text(
        "class WritesOnlyRouter:\n"
        "    def db_for_write(self, model, **hints):\n"
        "        return 'analytics' if model._meta.label == 'shop.Order' else None\n")
    env = support.process_env(DJANGO_SETTINGS_MODULE="routed_settings", PYTHONPATH=str(tmp_path))

    def manage(*args):
        return subprocess.run([sys.executable, str(support.ROOT / "manage.py"), *args], cwd=support.ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    check = manage("check")
    assert check.returncode == 1 and "Traceback" not in check.stderr
    [line] = [line for line in check.stderr.splitlines() if "pgnotify.E026" in line]
    assert "shop.Order is routed to database 'analytics'" in line

    migrate = manage("migrate", "--database", "analytics", "--noinput", "--skip-checks")
    assert migrate.returncode == 0, migrate.stderr
    assert ("  pgnotify: database 'analytics' is not served by a listener (only 'default'): no triggers or "
            "publication there") in migrate.stdout.splitlines()
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": second_database}) as conn:
        assert conn.execute("SELECT to_regclass('shop_order') IS NOT NULL").fetchone() == (True,)  # migrated there
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgnotify%'").fetchone() == (0,)
