"""Several databases (docs/operations.md#several-databases): a router sends shop.Order to a real second database,
'analytics'. `migrate --database analytics` attaches what that database needs there, and
`listen_notify --database analytics` serves it, beside the listener of 'default': each gets its
own database's changes only, those of 'analytics' carrying `"database": "analytics"` (docs/wire-format.md),
and a listener killed with SIGKILL hands on, when it comes back, what was committed meanwhile,
with the ids of that database's event log (NOTIFY) or its slot's (WAL)."""

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from notifyproject.shop.models import Product
from pgnotify.connection import listener_conninfo
from pgnotify.handlers.forwarding.base import message_of
from pgnotify.listener.notification import Notification
from pgnotify.web.frames import DASHBOARD_GROUP, frame
from tests.helpers import support
from tests.helpers.sources import source_env
from tests.helpers.support import process_env
from tests.helpers.web import Daphne, in_thread, layer_env, login, make_user, wait_websocket

STATE = "window.pgnotifyDashboard.state"

ROUTER = '''
class AnalyticsRouter:
    """shop.Order lives on 'analytics' only; everything else (pgnotify's own tables too) anywhere."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None

    db_for_read = db_for_write

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "shop" and model_name == "order":
            return db == "analytics"
        return None
'''


class Analytics:
    """The second database and a project whose settings route shop.Order there."""

    def __init__(self, name: str, settings_dir):
        self.name = name
        self.settings_dir = settings_dir

    def env(self, source: str) -> dict:
        return source_env(source, DJANGO_SETTINGS_MODULE="routed_settings", PYTHONPATH=str(self.settings_dir))

    def manage(self, source: str, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(support.ROOT / "manage.py"), *args], cwd=support.ROOT,
                              env=self.env(source), capture_output=True, text=True, timeout=120)

    def connect(self) -> psycopg.Connection:
        return psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": self.name})


@pytest.fixture
def analytics(transactional_db, tmp_path):
    """A real second database on the same server (its slots and itself dropped afterwards)."""
    with support.scratch_database("analytics") as name:
        (tmp_path / "routed_settings.py").write_text(
            "from notifyproject.settings import *  # noqa: F403\n"
            f"DATABASES = {{**DATABASES, 'analytics': {{**DATABASES['default'], 'NAME': {name!r}}}}}  # noqa: F405\n"
            "DATABASE_ROUTERS = ['routed_router.AnalyticsRouter']\n")
        (tmp_path / "routed_router.py").write_text(ROUTER)
        yield Analytics(name, tmp_path)


def events_of(listener: support.ManagedProcess, channel: str) -> list[dict]:
    return [line["payload"] for line in listener.json_lines() if line["channel"] == channel]


def wait_events(listener: support.ManagedProcess, channel: str, count: int, timeout: float = 15.0) -> list[dict]:
    listener.wait_for(lambda _: len(events_of(listener, channel)) >= count, timeout=timeout)
    return events_of(listener, channel)


def test_each_database_is_served_by_its_own_listener(analytics, event_source):
    migrate = analytics.manage(event_source, "migrate", "--database", "analytics", "--noinput")
    assert migrate.returncode == 0, migrate.stderr
    assert "not served" not in migrate.stdout
    with analytics.connect() as conn:
        if event_source == "notify":
            assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop_order'::regclass "
                                "AND tgname = 'pgnotify_change'").fetchone() == (1,)
        else:
            assert conn.execute("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgnotify' "
                                "AND tablename = 'shop_order'").fetchone() == (1,)
    check = analytics.manage(event_source, "check")
    assert "pgnotify.E026" not in check.stderr, check.stderr

    name = f"multi-{uuid.uuid4().hex[:8]}"
    env = analytics.env(event_source)
    on_analytics = support.start_listener("--name", name, "--database", "analytics", env=env)
    on_default = support.start_listener("--name", name, env=env)
    try:
        with analytics.connect() as conn:
            [(order,)] = conn.execute("INSERT INTO shop_order (quantity) VALUES (1) RETURNING id").fetchall()
            conn.execute("UPDATE shop_order SET quantity = 2 WHERE id = %s", [order])
            conn.execute("DELETE FROM shop_order WHERE id = %s", [order])
        product = Product.objects.create(sku=f"sku-{uuid.uuid4().hex[:8]}")

        orders = wait_events(on_analytics, "orders", 3)
        assert [(e["op"], e["pk"], e["database"]) for e in orders] == [
            ("INSERT", order, "analytics"), ("UPDATE", order, "analytics"), ("DELETE", order, "analytics")]
        [product_event] = wait_events(on_default, "products", 1)
        assert product_event["pk"] == product.pk and "database" not in product_event
        # Each listener reads its own database only (an event would have come by now: the product's did).
        assert events_of(on_default, "orders") == [] and events_of(on_analytics, "products") == []

        # SIGKILL, changes meanwhile, back: they are handed on, with the same ids as in that database.
        on_analytics.kill()
        with analytics.connect() as conn:
            [(second,)] = conn.execute("INSERT INTO shop_order (quantity) VALUES (5) RETURNING id").fetchall()
            conn.execute("UPDATE shop_order SET quantity = 6 WHERE id = %s", [second])
            logged = conn.execute("SELECT id FROM pgnotify_event WHERE channel = 'orders' AND payload->>'pk' = %s "
                                  "ORDER BY id", [str(second)]).fetchall()
        on_analytics = support.start_listener("--name", name, "--database", "analytics", env=env)
        on_analytics.wait_for(lambda _: any(e["pk"] == second and e["op"] == "UPDATE"
                                            for e in events_of(on_analytics, "orders")), timeout=15)
        replayed = [e for e in events_of(on_analytics, "orders") if e["pk"] == second]
        assert [(e["op"], e["database"]) for e in replayed] == [("INSERT", "analytics"), ("UPDATE", "analytics")]
        if event_source == "notify":
            assert [e["id"] for e in replayed] == [row[0] for row in logged]
        # What the killed process had handed on may come again (at least once), with the same ids.
        before = {e["id"]: (e["op"], e["pk"]) for e in orders}
        again = [e for e in events_of(on_analytics, "orders") if e["pk"] != second]
        assert all(before.get(e["id"]) == (e["op"], e["pk"]) for e in again)
        assert all(line.get("replayed") for line in on_analytics.json_lines() if line["channel"] == "orders")
        assert events_of(on_default, "orders") == []
    finally:
        on_analytics.stop()
        on_default.stop()


async def send_changes(prefix: str, batches: list[list[dict]]) -> None:
    from pgnotify.web.layers.postgres import PostgresChannelLayer

    layer = PostgresChannelLayer(prefix=prefix)
    try:
        for events in batches:
            await layer.group_send(DASHBOARD_GROUP, frame({"type": "changes", "events": events}))
    finally:
        await layer.close()


@pytest.mark.browser
@pytest.mark.once
def test_the_dashboard_keeps_events_of_two_databases_with_the_same_id(transactional_db, browser):
    """Ids are per database: the dashboard's de-duplication drops a repeat of (database, id), never
    the event of 'analytics' whose id is that of one of 'default'."""
    env = process_env(**layer_env("postgres"))
    daphne = Daphne(env).wait_ready()
    context = browser.new_context()
    try:
        make_user("staff", staff=True)
        page = context.new_page()
        login(page, daphne.url, "staff")
        page.goto(f"{daphne.url}/dashboard/")
        wait_websocket(page)
        ts = datetime.now(UTC).isoformat()
        of_default = {"id": 7, "op": "INSERT", "pk": 1, "ts": ts, "table": "shop_product", "channel": "products"}
        of_analytics = {**of_default, "table": "shop_order", "channel": "orders", "database": "analytics"}
        in_thread(asyncio.run, send_changes(env["CHANNEL_LAYER_PREFIX"], [[of_default], [of_analytics],
                                                                          [of_default, of_analytics]]))
        page.wait_for_function(f"{STATE}.events + {STATE}.duplicates >= 4", timeout=10_000)
        assert page.evaluate(f"[{STATE}.events, {STATE}.duplicates]") == [2, 2]
        assert page.evaluate("[window.pgnotifyDashboard.seen(7), window.pgnotifyDashboard.seen(7, 'analytics'), "
                             "window.pgnotifyDashboard.seen(7, 'other')]") == [True, True, False]
    finally:
        context.close()
        daphne.stop()


@pytest.mark.once
def test_forwarded_messages_of_two_databases_with_the_same_id_keep_apart():
    """A destination de-duplicates by message id (JetStream's Nats-Msg-Id, RabbitMQ's message_id):
    an event of 'analytics' is "analytics:<id>", never the id of an event of 'default'."""
    of_default = Notification("orders", '{"id": 7, "op": "INSERT", "txid": 12, "channel": "orders"}')
    of_analytics = Notification("orders", of_default.payload)
    of_analytics.add_database("analytics")
    assert message_of(of_default).id == 7 and message_of(of_analytics).id == "analytics:7"
    assert json.loads(message_of(of_analytics).body) == {**json.loads(of_default.payload), "database": "analytics"}
    assert of_analytics.event["database"] == "analytics"
