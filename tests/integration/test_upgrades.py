"""A database made by an older release upgrades with nothing lost: built in the first released
layout (migration 0001, the row-level change function) or the last one before the squash (0007,
change function v5), written to, then migrated to the head while a writer goes on. The event
log, the positions and the triggers hold, every row written has its one event, and a listener
resumes from its position; with the WAL source, the publication and the slot hold."""

import re
import threading

import psycopg
import pytest

from pgnotify.connection import listener_conninfo
from pgnotify.listener.wal.slots import slot_name
from tests.helpers import support
from tests.helpers.schema import STRAY_FUNCTIONS, manage, query

pytestmark = pytest.mark.django_db(transaction=True)

# Migrates every app but pgnotify's to its head and pgnotify along its history before the squash
# up to argv[1], as the older release did: the squashed migration does not stand in for it.
BUILD = """
import sys
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

executor = MigrationExecutor(connection)
executor.loader = MigrationLoader(connection, replace_migrations=False)
graph = executor.loader.graph
targets = [node for node in graph.leaf_nodes() if not node[0].startswith("pgnotify")]
targets.append(("pgnotify", sys.argv[1]))
if sys.argv[1] != "0001_initial":
    targets.append(("pgnotify_chat", "0001_initial"))
executor.migrate(targets)
"""

# The triggers that release's `migrate` attached to shop_order (WATCH: channel "orders") and
# shop_product (CACHE_INVALIDATE: "catalog").
OLD_TRIGGERS = {
    "0001_initial": """
        CREATE TRIGGER pgnotify_change AFTER INSERT OR UPDATE OR DELETE ON shop_order
            FOR EACH ROW EXECUTE FUNCTION pgnotify_notify_change('orders', 'shop.order', 'id', '{}');
    """,
    "0007_notify_change_v5": ("""
        CREATE TRIGGER pgnotify_change AFTER UPDATE ON shop_order
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
            EXECUTE FUNCTION pgnotify_notify_change_v5({v5});
        CREATE TRIGGER pgnotify_change_insert AFTER INSERT ON shop_order REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT
            EXECUTE FUNCTION pgnotify_notify_change_v5({v5});
        CREATE TRIGGER pgnotify_change_delete AFTER DELETE ON shop_order REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT
            EXECUTE FUNCTION pgnotify_notify_change_v5({v5});
    """).format(v5="""'{"id"}', 'shop_order', '', '{"id"}', 'orders', 'shop.order', '{}'"""),
}
CACHE_TRIGGER = """
    CREATE TRIGGER pgnotify_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON shop_product
        FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_invalidate_cache('catalog');
"""
FUNCTIONS = "SELECT proname FROM pg_proc WHERE proname LIKE 'pgnotify%%' AND proname NOT LIKE 'pgnotify\\_change\\_%%'"
TRIGGER_FUNCTIONS = """
    SELECT t.tgrelid::regclass::text, t.tgname, p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgname LIKE 'pgnotify%%' AND t.tgrelid IN ('shop_order'::regclass, 'shop_product'::regclass)
"""
ORDER_INSERTS = "SELECT payload->'pk' FROM pgnotify_event WHERE channel = 'orders' AND payload->>'op' = 'INSERT'"


class Writer:
    """Inserts orders one by one in a thread of its own until stopped; `ids`: those committed."""

    def __init__(self, conninfo: dict):
        self.conninfo, self.ids, self.error = conninfo, [], None
        self.stopped, self.written = threading.Event(), threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            with psycopg.Connection.connect(autocommit=True, **self.conninfo) as conn:
                while not self.stopped.wait(0.005):  # a pace, not a wait for anything
                    row = conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()
                    with self.written:
                        self.ids.append(row[0])
                        self.written.notify_all()
        except psycopg.Error as error:
            self.error = error
        finally:
            with self.written:
                self.written.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Returns once `count` more rows are committed."""
        with self.written:
            target = len(self.ids) + count
            self.written.wait_for(lambda: len(self.ids) >= target or not self.thread.is_alive(), timeout)
        assert self.error is None, f"a write failed during the upgrade: {self.error}"
        assert len(self.ids) >= target, "the writer is stuck"

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(10)
        assert self.error is None, f"a write failed during the upgrade: {self.error}"


@pytest.fixture
def old_database(db):
    with support.scratch_database("upgrade") as name:
        url = support.database_url_for_tests().rsplit("/", 1)[0] + "/" + name
        yield name, url, {**listener_conninfo(), "dbname": name}


def build(url: str, layout: str, conninfo: dict, triggers: bool = True) -> None:
    built = manage(url, "shell", "-c", BUILD.replace("sys.argv[1]", repr(layout)))
    assert built.returncode == 0, built.stderr
    if triggers:
        with psycopg.Connection.connect(autocommit=True, **conninfo) as conn:
            conn.execute(OLD_TRIGGERS[layout] + CACHE_TRIGGER)


@pytest.mark.parametrize("layout", ["0001_initial", "0007_notify_change_v5"])
def test_an_older_database_upgrades_with_every_event_and_position(old_database, layout):
    _, url, conninfo = old_database
    build(url, layout, conninfo)
    with psycopg.Connection.connect(autocommit=True, **conninfo) as conn:
        conn.execute("INSERT INTO pgnotify_listener (name, snapshot) VALUES ('upgrade', pg_current_snapshot()::text)")
        positions = query(conn, "SELECT name, snapshot, updated_at FROM pgnotify_listener")
        conn.execute("INSERT INTO shop_order DEFAULT VALUES")
        conn.execute("UPDATE shop_order SET status = 'paid'")
        conn.execute("INSERT INTO shop_product (sku) VALUES ('OLD-1')")
        logged = query(conn, "SELECT id, channel, txid::text, payload::text FROM pgnotify_event")
        assert len(logged) == 2  # the order's INSERT and UPDATE (the product has only its cache trigger)

        with Writer(conninfo) as writer:
            writer.wait_for(20)
            migrated = manage(url, "migrate", "--noinput")
            assert migrated.returncode == 0, migrated.stderr
            writer.wait_for(20)

        assert query(conn, FUNCTIONS) == {("pgnotify_log_changes",), ("pgnotify_jsonb_row",),
                                          ("pgnotify_invalidate_cache",)}
        triggers = query(conn, TRIGGER_FUNCTIONS)
        assert {(table, trigger, re.sub(r"_[0-9a-f]{12}$", "", function)) for table, trigger, function in triggers} >= {
            ("shop_order", "pgnotify_change", "pgnotify_change_shop_order"),
            ("shop_order", "pgnotify_change_insert", "pgnotify_change_shop_order"),
            ("shop_order", "pgnotify_change_delete", "pgnotify_change_shop_order"),
            ("shop_product", "pgnotify_cache", "pgnotify_invalidate_cache")}
        assert query(conn, STRAY_FUNCTIONS) == set()
        assert logged <= query(conn, "SELECT id, channel, txid::text, payload::text FROM pgnotify_event")
        assert query(conn, "SELECT name, snapshot, updated_at FROM pgnotify_listener") == positions
        # Every row the writer committed, before, during and after the upgrade, has its one event.
        inserted = [pk for (pk,) in conn.execute(ORDER_INSERTS).fetchall()]
        assert sorted(inserted) == sorted([1, *writer.ids])

        again = manage(url, "migrate", "--noinput")
        assert again.returncode == 0 and "pgnotify:" not in again.stdout  # the triggers were moved as wanted

        # The listener resumes from its position: the log before, during and after the upgrade.
        listener = support.start_listener("--name", "upgrade", env=support.process_env(DATABASE_URL=url))
        try:
            conn.execute("INSERT INTO shop_order DEFAULT VALUES")
            expected = 1 + len(writer.ids) + 1
            listener.wait_for(lambda _: len(order_inserts(listener)) >= expected, timeout=30)
        finally:
            listener.stop()
        assert len(order_inserts(listener)) == len(set(order_inserts(listener))) == expected


def order_inserts(listener) -> list:
    return [j["payload"]["pk"] for j in listener.json_lines()
            if j["channel"] == "orders" and j["payload"].get("op") == "INSERT"]


def test_an_older_database_on_the_wal_source_keeps_its_publication_and_slot(old_database):
    name, url, conninfo = old_database
    build(url, "0007_notify_change_v5", conninfo, triggers=False)  # the WAL source: no change trigger
    slot = slot_name("upgrade", name)
    with psycopg.Connection.connect(autocommit=True, **conninfo) as conn:
        conn.execute("CREATE PUBLICATION pgnotify FOR TABLE shop_order WITH (publish_via_partition_root = true)")
        conn.execute("ALTER TABLE shop_order REPLICA IDENTITY FULL")
        conn.execute("INSERT INTO pgnotify_listener (name, snapshot) VALUES ('upgrade', pg_current_snapshot()::text)")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        conn.execute("INSERT INTO shop_order DEFAULT VALUES")
        # Another app migrated first: pgnotify, not yet at its head, is still installed.
        assert manage(url, "migrate", "shop", "--noinput", PGNOTIFY_SOURCE="wal").returncode == 0
        assert query(conn, "SELECT pubname FROM pg_publication") == {("pgnotify",)}

        with Writer(conninfo) as writer:
            writer.wait_for(20)
            migrated = manage(url, "migrate", "--noinput", PGNOTIFY_SOURCE="wal")
            assert migrated.returncode == 0, migrated.stderr
            writer.wait_for(20)

        assert query(conn, FUNCTIONS) == {("pgnotify_log_changes",), ("pgnotify_jsonb_row",),
                                          ("pgnotify_invalidate_cache",)}
        assert query(conn, "SELECT tgname FROM pg_trigger WHERE tgname = 'pgnotify_change'") == set()
        assert query(conn, STRAY_FUNCTIONS) == set()  # no table's own function is left behind
        assert ("public", "shop_order") in query(conn, "SELECT schemaname, tablename FROM pg_publication_tables")
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone() == (1,)

        listener = support.start_listener("--name", "upgrade",
                                          env=support.process_env(DATABASE_URL=url, PGNOTIFY_SOURCE="wal"))
        try:
            conn.execute("INSERT INTO shop_order DEFAULT VALUES")
            expected = 1 + len(writer.ids) + 1
            listener.wait_for(lambda _: len(order_inserts(listener)) >= expected, timeout=30)
        finally:
            listener.stop()
        assert len(order_inserts(listener)) == len(set(order_inserts(listener))) == expected
