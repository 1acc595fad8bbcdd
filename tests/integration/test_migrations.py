"""Migrations install and remove everything; a WATCH change refreshes exactly the triggers it touches."""

import json
import os

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from psycopg import sql

from notifyproject.shop.demo import Inbox
from notifyproject.shop.models import Order, Product
from pgnotify.connection import listener_conninfo
from pgnotify.schema.triggers import sync_triggers
from tests.helpers.schema import PGNOTIFY_OBJECTS, SLOTS, STRAY_FUNCTIONS, TRIGGER_COMMENTS, manage, query


def test_migrate_forward_back_forward(throwaway_database):
    name, url = throwaway_database
    forward = manage(url, "migrate", "--noinput")
    assert forward.returncode == 0, forward.stderr
    assert "pgnotify: attached pgnotify_change on shop_order" in forward.stdout
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": name}) as conn:
        installed = query(conn, PGNOTIFY_OBJECTS)
        comments = query(conn, TRIGGER_COMMENTS)
        # The change function as it is now, no other version; each change trigger calls its table's own.
        functions = {row[0] for row in installed if row[0].startswith("function")}
        assert {f for f in functions if not f.endswith(" (own)")} == {
            "function pgnotify_log_changes", "function pgnotify_jsonb_row", "function pgnotify_invalidate_cache"}
        assert "function pgnotify_change_shop_order (own)" in functions
        assert query(conn, STRAY_FUNCTIONS) == set()
        assert {("function pgnotify_log_changes",), ("function pgnotify_invalidate_cache",),
                ("relation pgnotify_event",), ("relation pgnotify_listener",), ("relation pgnotify_chatmessage",),
                ("trigger pgnotify_change on shop_order",), ("trigger pgnotify_change on shop_product",),
                ("trigger pgnotify_change on auth_user",), ("trigger pgnotify_cache on shop_product",),
                ("trigger pgnotify_cache on auth_user",)} <= installed
        assert all(comment.startswith("pgnotify:") for _, comment in comments) and len(comments) >= 5
        conn.execute("INSERT INTO shop_order DEFAULT VALUES")
        assert conn.execute("SELECT count(*) FROM pgnotify_event").fetchone() == (1,)

        again = manage(url, "migrate", "--noinput")
        assert again.returncode == 0 and "pgnotify:" not in again.stdout  # nothing changed, nothing rewritten
        assert query(conn, TRIGGER_COMMENTS) == comments

        back = manage(url, "migrate", "pgnotify", "zero", "--noinput")
        assert back.returncode == 0, back.stderr
        assert query(conn, PGNOTIFY_OBJECTS) == set()
        # No trigger is left pointing at a dropped function: the watched tables still take writes.
        conn.execute("INSERT INTO shop_order DEFAULT VALUES")
        conn.execute("UPDATE shop_order SET status = 'paid'")
        conn.execute("UPDATE auth_user SET first_name = 'x'")

        forward_again = manage(url, "migrate", "--noinput")
        assert forward_again.returncode == 0, forward_again.stderr
        assert query(conn, PGNOTIFY_OBJECTS) == installed
        assert query(conn, TRIGGER_COMMENTS) == comments
        conn.execute("UPDATE shop_order SET status = 'shipped'")
        logged = conn.execute("SELECT payload->>'op', payload->>'table' FROM pgnotify_event").fetchall()
        assert logged == [("UPDATE", "shop_order")] * 2


def trigger_comments() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(TRIGGER_COMMENTS)
        return dict(cursor.fetchall())


def own_function(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgfoid::regproc::text FROM pg_trigger WHERE tgname = 'pgnotify_change' "
                       "AND tgrelid = %s::regclass", [table])
        return cursor.fetchone()[0]


def stray_functions() -> set:
    with connection.cursor() as cursor:
        cursor.execute(STRAY_FUNCTIONS)
        return set(cursor.fetchall())


def watch_settings(**changes) -> dict:
    """settings.PGNOTIFY with WATCH entries replaced (None removes one)."""
    watch = {**settings.PGNOTIFY["WATCH"], **changes}
    return {**settings.PGNOTIFY, "WATCH": {label: options for label, options in watch.items() if options}}


@pytest.mark.django_db(transaction=True)
def test_watch_changes_refresh_only_the_triggers_they_touch():
    original = trigger_comments()
    assert "shop_order.pgnotify_change" in original
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        inbox = Inbox(conn, "migrations", timeout=5.0)
        inbox.listen("orders", "orders_v2", "users", "products")
        try:
            assert sync_triggers() == []  # unchanged settings rewrite nothing
            assert trigger_comments() == original

            with override_settings(PGNOTIFY=watch_settings(**{"shop.Order": {"channel": "orders_v2"}})):
                old_function = own_function("shop_order")
                assert sync_triggers() == ["refreshed pgnotify_change on shop_order"]
                changed = trigger_comments()
                # The table has a new function of its own; the one no trigger calls any more is gone.
                assert own_function("shop_order") != old_function and stray_functions() == set()
                assert sync_triggers() == []
            assert {k for k in original if changed[k] != original[k]} == {"shop_order.pgnotify_change"}
            order = Order.objects.create()
            event = json.loads(inbox.next().payload)
            assert (event["channel"], event["pk"]) == ("orders_v2", order.pk)
            assert sync_triggers() == ["refreshed pgnotify_change on shop_order"]
            assert trigger_comments() == original

            user_options = {"channel": "users", "exclude": ["password", "email"]}
            with override_settings(PGNOTIFY=watch_settings(**{"auth.User": user_options})):
                assert sync_triggers() == ["refreshed pgnotify_change on auth_user"]
                assert trigger_comments()["auth_user.pgnotify_change"] != original["auth_user.pgnotify_change"]
            get_user_model().objects.create_user("dave", "dave@example.com", "a-password")
            event = json.loads(inbox.next().payload)
            assert event["table"] == "auth_user" and "email" not in event["row"] and "password" not in event["row"]
            assert sync_triggers() == ["refreshed pgnotify_change on auth_user"]

            with override_settings(PGNOTIFY=watch_settings(**{"shop.Product": None})):
                assert sync_triggers() == ["dropped pgnotify_change on shop_product"]
                assert "shop_product.pgnotify_change" not in trigger_comments()
                assert "shop_product.pgnotify_cache" in trigger_comments()  # cache invalidation stays
            Product.objects.create(sku="UNWATCHED-1")
            assert inbox.rest() == []  # no change event for the unwatched table
            assert sync_triggers() == ["attached pgnotify_change on shop_product"]
        finally:
            sync_triggers()  # whatever happened above, the test database gets its triggers back
    assert trigger_comments() == original


PUBLISHED = """
    SELECT 'published ' || schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'pgnotify'
    UNION ALL SELECT 'identity ' || oid::regclass || ' ' || relreplident::text FROM pg_class
     WHERE relkind IN ('r', 'p') AND relreplident <> 'd' AND relnamespace::regnamespace::text NOT LIKE 'pg\\_%%'
"""


def test_migrate_with_the_wal_source_publishes_every_shape_and_switches_back(throwaway_database):
    name, url = throwaway_database
    assert manage(url, "migrate", "--noinput", "-v", "0").returncode == 0  # with the NOTIFY source first
    wal = manage(url, "migrate", "--noinput", PGNOTIFY_SOURCE="wal")
    assert wal.returncode == 0, wal.stderr
    assert [line for line in wal.stderr.splitlines() if line.startswith("  pgnotify")] == []  # no problem
    for line in ["created publication pgnotify", "published shop_order", "published shapes_other.items",
                 "published shapes_compositeitem", "published shapes_reading", "dropped pgnotify_change on shop_order",
                 "replica identity FULL on shapes_reading_high_b (partition of shapes_reading)",
                 "replica identity FULL on shapes_other.items"]:
        assert f"  pgnotify: {line}" in wal.stdout.splitlines()
    assert wal.stdout.count("published shapes_baseitem") == 1  # a model and its proxy: one table
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": name}) as conn:
        # No change trigger, so no table's own change function either.
        assert query(conn, "SELECT proname FROM pg_proc WHERE proname LIKE 'pgnotify\\_change\\_%%'") == set()
        state = {row for (row,) in conn.execute(PUBLISHED)}
        assert {"published public.shapes_reading", "published shapes_other.items", "identity shapes_reading_low f",
                "identity shapes_reading_high_a f", "identity shapes_compositeitem f",
                "identity shapes_other.items f"} <= state
        assert "published public.shapes_reading_low" not in state  # partitions come as their table
        again = manage(url, "migrate", "--noinput", PGNOTIFY_SOURCE="wal")
        assert again.returncode == 0 and "  pgnotify:" not in again.stdout + again.stderr  # nothing to do
        back = manage(url, "migrate", "--noinput", PGNOTIFY_SOURCE="notify")
        assert back.returncode == 0 and "  pgnotify: dropped publication pgnotify" in back.stdout.splitlines()
        assert "  pgnotify: attached pgnotify_change on shapes_other.items" in back.stdout.splitlines()
        assert {row for (row,) in conn.execute(PUBLISHED)} == set()


WAL_LEFTOVERS = """
    SELECT 'publication ' || pubname FROM pg_publication
    UNION ALL SELECT 'identity ' || oid::regclass || ' ' || relreplident::text FROM pg_class
     WHERE relkind IN ('r', 'p') AND relreplident <> 'd' AND relnamespace::regnamespace::text NOT LIKE 'pg\\_%%'
"""


def test_migrate_pgnotify_zero_with_the_wal_source_removes_everything(throwaway_database):
    name, url = throwaway_database
    assert manage(url, "migrate", "--noinput", "-v", "0", PGNOTIFY_SOURCE="wal").returncode == 0
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": name}) as conn:
        assert {"publication pgnotify", "identity shop_order f"} <= {row for (row,) in conn.execute(WAL_LEFTOVERS)}
        # A listener name known to the database: migrate makes its slot.
        conn.execute("INSERT INTO pgnotify_listener (name, snapshot) VALUES ('zero', pg_current_snapshot()::text)")
        assert manage(url, "migrate", "--noinput", "-v", "0", PGNOTIFY_SOURCE="wal").returncode == 0
        assert query(conn, SLOTS) != set()
        back = manage(url, "migrate", "pgnotify", "zero", "--noinput", PGNOTIFY_SOURCE="wal")
        assert back.returncode == 0, back.stderr
        assert {row for (row,) in conn.execute(WAL_LEFTOVERS)} == set()  # no publication, identities DEFAULT
        assert query(conn, SLOTS) == set()
        assert query(conn, PGNOTIFY_OBJECTS) == set()  # functions, triggers, tables
        assert "  pgnotify: dropped publication pgnotify" in back.stdout.splitlines()


@pytest.fixture
def restricted_role(throwaway_database):
    """A login role with REPLICATION that owns the throwaway database and every table in it (it
    migrates it), but has no CREATE on the database: it cannot create a publication."""
    name, url = throwaway_database
    role = f"pgnotify_restricted_{os.getpid()}"
    role_url = url.replace("://" + url.split("://", 1)[1].split("@", 1)[0] + "@", f"://{role}@", 1)
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(sql.Identifier(role)))
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(role)))
            migrated = manage(role_url, "migrate", "--noinput", "-v", "0")  # the NOTIFY source: triggers
            assert migrated.returncode == 0, migrated.stderr
            admin.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(sql.Identifier(name),
                                                                                 sql.Identifier(role)))
            yield name, role_url, role
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_the_wal_source_without_create_on_the_database_is_a_check_error_and_a_failing_migrate(restricted_role):
    name, url, role = restricted_role
    check = manage(url, "check", "--database", "default", PGNOTIFY_SOURCE="wal")
    assert check.returncode == 1 and "Traceback" not in check.stderr
    [line] = [line for line in check.stderr.splitlines() if "pgnotify.E039" in line]
    assert f"role {role} has no CREATE on database {name}" in line
    assert f"GRANT CREATE ON DATABASE {name} TO {role}" in check.stderr

    migrate = manage(url, "migrate", "--noinput", "--skip-checks", PGNOTIFY_SOURCE="wal")
    assert migrate.returncode == 1 and "Traceback" not in migrate.stderr
    last = migrate.stderr.splitlines()[-1]
    assert last.startswith("CommandError: pgnotify: could not create publication pgnotify: ")
    assert last.endswith(f"permission denied for database {name}")
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": name}) as conn:
        triggers = ("SELECT count(*) FROM pg_trigger "
                    "WHERE tgname = 'pgnotify_change' AND tgrelid = 'shop_order'::regclass")
        assert conn.execute(triggers).fetchone() == (1,)  # the NOTIFY source still serves the table
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(name), sql.Identifier(role)))
        assert manage(url, "check", "--database", "default", PGNOTIFY_SOURCE="wal").returncode == 0
        again = manage(url, "migrate", "--noinput", PGNOTIFY_SOURCE="wal")
        assert again.returncode == 0, again.stderr
        assert "  pgnotify: created publication pgnotify" in again.stdout.splitlines()
        assert conn.execute(triggers).fetchone() == (0,)
