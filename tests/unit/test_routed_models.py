"""What no listener can serve is a `check` error naming the model and the database (pgnotify.E026):
routers whose db_for_write and allow_migrate disagree (its triggers would not be where its writes go), a
database that is not PostgreSQL, a database where app 'pgnotify' is not migrated. (Serving a routed model:
tests/e2e/test_several_databases.py; `migrate` of a direct alias: tests/integration/test_routed_models.py.)"""

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from pgnotify import checks


def routing_errors(router: str, engine: str = "django.db.backends.postgresql") -> list:
    databases = {**settings.DATABASES,
                 "analytics": {**settings.DATABASES["default"], "NAME": "analytics", "ENGINE": engine}}
    with override_settings(DATABASE_ROUTERS=[f"tests.helpers.routers.{router}"], DATABASES=databases):
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
    with override_settings(DATABASE_ROUTERS=["tests.helpers.routers.MigrateOnlyRouter"],
                           PGNOTIFY={**settings.PGNOTIFY, "WATCH": {
                               label: options for label, options in settings.PGNOTIFY["WATCH"].items()
                               if label != "shop.Order"}}):
        assert checks.check_routing() == []
