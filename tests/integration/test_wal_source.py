"""The WAL source end to end: `listen_notify` with PGNOTIFY["SOURCE"] = "wal" (and the listener
in-process where a sink is easier to read), on the test database switched to the publication."""

import asyncio
import subprocess
import uuid

import psycopg
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import CommandError

from notifyproject.shop.models import Order, Product
from pgnotify import notify
from pgnotify.connection import listener_conninfo
from pgnotify.listener import ListenerOptions
from pgnotify.listener.wal.protocol import Change, Commit, parse_copy_data
from pgnotify.listener.wal.slots import slot_name
from pgnotify.listener.wal.stream import ReplicationStream
from pgnotify.schema.publication import sync_publication
from pgnotify.sources import make_listener
from tests.helpers.faults import PrivateServer, RecordingSink
from tests.helpers.sources import source_env, use_source
from tests.helpers.support import ManagedProcess, database_url_for_tests
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wal(transactional_db, settings):
    with use_source("wal", settings):
        yield source_env("wal")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class InProcess:
    """A WAL listener in this process with a recording sink, for `async with`."""

    def __init__(self, channels=("orders", "products", "system", "cache_invalidate"), conninfo=None, name=None):
        self.sink, self.stop = RecordingSink(), asyncio.Event()
        options = ListenerOptions(channels=list(channels), name=name or unique("inproc"))
        self.listener = make_listener(conninfo or listener_conninfo(), options, self.sink)

    async def __aenter__(self) -> "InProcess":
        self.task = asyncio.create_task(self.listener.run(self.stop))
        await self.sink.wait_for(lambda: "live" in self.sink.states(), within=20)
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)

    def on(self, channel: str) -> list:
        return [n for n in self.sink.notifications if n.channel == channel]


def execute(*statements: str) -> None:
    with psycopg.connect(autocommit=True, **listener_conninfo()) as conn:
        for statement in statements:
            conn.execute(statement)


def test_password_never_leaves_the_listener(wal, listener):
    as_json = listener("--name", unique("exclude-json"), env=wal)
    human = ManagedProcess("listen_notify", "--name", unique("exclude-human"), "--stats-interval", "0", env=wal)
    try:
        human.wait_for_line("live", timeout=20)
        user = get_user_model().objects.create_user("dora", "dora@example.com", "first-secret-password")
        hashes = [user.password, make_password("second-secret-password"), make_password("third-secret-password")]
        get_user_model().objects.filter(pk=user.pk).update(password=hashes[1])  # only the password: no event
        get_user_model().objects.filter(pk=user.pk).update(password=hashes[2], last_name="Jones")
        pk = user.pk
        user.delete()
        human.wait_for(lambda lines: any(f"DELETE auth_user pk={pk}" in line for line in lines))

        def user_events(_):
            events = [j["payload"] for j in as_json.json_lines() if j["channel"] == "users"]
            return events if events and events[-1]["op"] == "DELETE" else None

        events = as_json.wait_for(user_events)
    finally:
        human.stop()
    as_json.stop()
    assert [e["op"] for e in events] == ["INSERT", "UPDATE", "DELETE"]
    assert events[1]["changed"] == ["last_name"] and events[1]["row"]["last_name"] == "Jones"
    assert all("password" not in e["row"] for e in events) and events[2]["row"]["username"] == "dora"
    # Every write invalidated the users' caches, the password-only UPDATE too.
    invalidations = [j["payload"] for j in as_json.json_lines() if j["channel"] == "cache_invalidate"]
    assert [i["op"] for i in invalidations if i["table"] == "auth_user"] == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    assert all(i["tags"] == ["users"] for i in invalidations if i["table"] == "auth_user")
    output = "\n".join(as_json.stdout_lines + as_json.stderr_lines + human.stdout_lines + human.stderr_lines)
    for password_hash in hashes:
        assert password_hash not in output and password_hash.split("$")[-1] not in output
    assert '"password"' not in output


def test_a_row_of_20000_characters_arrives_whole_and_keeps_its_toasted_value(wal, listener):
    process = listener("--name", unique("large"), env=wal)
    description = "".join(f"{n:05d}" for n in range(4000))  # 20,000 characters, stored out of line
    product = Product.objects.create(name="Big", sku="BIG-WAL", description=description)
    Product.objects.filter(pk=product.pk).update(name="Bigger")  # leaves the description as it was

    def two_events(_):
        events = [j["payload"] for j in process.json_lines() if j["channel"] == "products"]
        return events if len(events) >= 2 else None

    inserted, updated = process.wait_for(two_events)
    assert inserted["row"]["description"] == description and "truncated" not in inserted
    assert updated["changed"] == ["name"] and updated["row"]["description"] == description


@pytest.mark.slow
async def test_a_statement_of_100000_rows_is_handed_on_whole(wal):
    rows = 100_000
    await asyncio.to_thread(execute, f"INSERT INTO shop_order (quantity) SELECT 1 FROM generate_series(1, {rows})")
    async with InProcess(channels=("orders",)) as run:  # a new name: it starts after the INSERT
        await asyncio.to_thread(execute, "UPDATE shop_order SET quantity = quantity + 1")
        await run.sink.wait_for(lambda: len(run.sink.notifications) >= rows, within=60)  # O(1) per event
    events = [n.event for n in run.on("orders")]
    assert len(events) == rows and {e["op"] for e in events} == {"UPDATE"}
    assert len({e["id"] for e in events}) == rows and len({e["pk"] for e in events}) == rows
    assert all(e["changed"] == ["quantity"] and e["row"]["quantity"] == 2 for e in events)
    assert len({e["txid"] for e in events}) == 1 and len({e["ts"] for e in events}) == 1


async def test_commits_elsewhere_move_the_slot_and_a_change_after_them_arrives(wal):
    """A busy server, quiet watched tables: the server's keepalives (one per commit anywhere, read
    in batches) move the slot's position, so it keeps no WAL for them."""
    def commits_elsewhere(count: int) -> str:
        with psycopg.connect(autocommit=True, **listener_conninfo()) as conn:
            for number in range(count):
                conn.execute("INSERT INTO pgnotify_test_elsewhere VALUES (%s)", [number])
            return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]

    def slot_has_passed(slot: str, lsn: str) -> bool:
        with psycopg.connect(autocommit=True, **listener_conninfo()) as conn:
            return conn.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                                "WHERE slot_name = %s", [lsn, slot]).fetchone()[0]

    await asyncio.to_thread(execute, "CREATE TABLE pgnotify_test_elsewhere (n int)")  # not published
    try:
        async with InProcess(channels=("orders",)) as run:
            written = await asyncio.to_thread(commits_elsewhere, 3000)
            await eventually_async(lambda: asyncio.to_thread(slot_has_passed, run.listener.slot, written), 10,
                                   "the slot to pass the commits elsewhere")  # confirmed at the next checkpoint (1 s)
            order = await database_sync_to_async(Order.objects.create)(quantity=7)
            await run.sink.wait_for(lambda: run.on("orders"), within=10)
    finally:
        await asyncio.to_thread(execute, "DROP TABLE pgnotify_test_elsewhere")
    assert [(n.event["op"], n.event["pk"]) for n in run.on("orders")] == [("INSERT", order.pk)]


async def test_a_restart_hands_on_none_of_the_live_streams_events_again(wal):
    """Order is a live stream's model: the listener writes its events to the event log, for a
    subscription's resume. The next start must not replay them as logged before a switch."""
    name = unique("restart")
    async with InProcess(channels=("orders",), name=name) as run:
        first = await database_sync_to_async(Order.objects.create)(quantity=1)
        await run.sink.wait_for(lambda: run.on("orders"))
    async with InProcess(channels=("orders",), name=name) as again:
        second = await database_sync_to_async(Order.objects.create)(quantity=2)
        await again.sink.wait_for(lambda: any(n.event["pk"] == second.pk for n in again.on("orders")))
    assert [n.event["pk"] for n in run.on("orders")] == [first.pk]
    assert [n.event["pk"] for n in again.on("orders")] == [second.pk]


async def test_truncate_invalidates_the_table_caches_and_extra_channels_pass_beside(wal):
    async with InProcess(channels=("products", "system", "cache_invalidate", "chat", "side")) as run:
        await database_sync_to_async(Product.objects.create)(name="P", sku="TRUNC-1")
        await database_sync_to_async(notify)("side", {"hello": "world"})
        await asyncio.to_thread(execute, "TRUNCATE shop_product CASCADE")
        await run.sink.wait_for(lambda: any(n.data.get("op") == "TRUNCATE" for n in run.on("cache_invalidate")))
        await run.sink.wait_for(lambda: run.on("side"))
    assert [n.data for n in run.on("cache_invalidate")] == [
        {"op": "INSERT", "tags": ["catalog"], "table": "shop_product"},
        {"op": "TRUNCATE", "tags": ["catalog"], "table": "shop_product"}]
    assert [n.data for n in run.on("side")] == [{"hello": "world"}]
    assert [n.event["op"] for n in run.on("products")] == ["INSERT"]  # TRUNCATE is no row event, as with triggers


async def test_replica_identity_default_makes_events_without_changed(wal, settings):
    watch = {**settings.PGNOTIFY["WATCH"], "shop.Order": {"channel": "orders", "replica_identity": "default"}}
    settings.PGNOTIFY = {**settings.PGNOTIFY, "WATCH": watch}
    assert "replica identity DEFAULT on shop_order" in await database_sync_to_async(sync_publication)()
    async with InProcess(channels=("orders",)) as run:
        await asyncio.to_thread(execute, "INSERT INTO shop_order (quantity) VALUES (1)",
                                "UPDATE shop_order SET quantity = 2", "DELETE FROM shop_order")
        await run.sink.wait_for(lambda: len(run.on("orders")) == 3)
    inserted, updated, deleted = (n.event for n in run.on("orders"))
    assert "changed" not in updated and updated["row"]["quantity"] == 2
    assert deleted["row"] == {"id": inserted["pk"]} and deleted["pk"] == inserted["pk"]


def test_slots_are_listed_and_a_retired_names_slot_dropped(wal, listener, capsys):
    name = unique("retired")
    listener("--name", name, env=wal).stop()
    slot = slot_name(name, listener_conninfo()["dbname"])
    call_command("pgnotify_slots")
    listed = capsys.readouterr().out
    assert slot in listed and "reserved" in listed and " MB" in listed
    call_command("pgnotify_slots", "--drop", name)
    assert capsys.readouterr().out.strip() == f"dropped replication slot {slot}"
    with pytest.raises(CommandError, match=f"no replication slot {slot} in this database"):
        call_command("pgnotify_slots", "--drop", name)
    active = listener("--name", name, env=wal)
    result = subprocess.run([*ManagedProcess.command(), "pgnotify_slots", "--drop", name], env=wal,
                            capture_output=True, text=True, timeout=60)
    active.stop()
    assert result.returncode == 1 and "in use by a running listener" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_checks_say_what_the_wal_source_lacks(wal, settings):
    from django.core import checks

    messages = {message.id: message.msg for message in checks.run_checks(databases=["default"])}
    assert "pgnotify.W030" in messages  # max_slot_wal_keep_size is unlimited on the test servers
    assert "pgnotify.W031" not in messages  # migrated for the WAL source
    execute("DROP ROLE IF EXISTS pgnotify_no_replication", "CREATE ROLE pgnotify_no_replication LOGIN")
    try:
        url = database_url_for_tests().replace("postgresql://postgres@", "postgresql://pgnotify_no_replication@", 1)
        result = subprocess.run([*ManagedProcess.command(), "check", "--database", "default"], capture_output=True,
                                text=True, timeout=60, env={**wal, "DATABASE_URL": url})
    finally:
        execute("DROP ROLE pgnotify_no_replication")
    assert result.returncode == 1
    assert "(pgnotify.E034) The WAL source needs a role with REPLICATION" in result.stderr


@pytest.mark.slow
def test_wal_level_below_logical_is_an_error_and_an_invalidated_slot_is_reported(tmp_path):
    server = PrivateServer(tmp_path / "pgdata")
    try:
        url = server.create_database("pgnotify_slots")
        env = source_env("wal", DATABASE_URL=url)
        assert subprocess.run([*ManagedProcess.command(), "migrate", "--noinput", "-v", "0"], env=env,
                              timeout=120).returncode == 0
        name = unique("lost")
        first = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", "--name", name, env=env)
        first.wait_for_line(": live", timeout=20, stream="stderr")
        first.stop()
        # The slot falls behind max_slot_wal_keep_size and a checkpoint invalidates it.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
            conn.execute("SELECT pg_reload_conf()")
            for _ in range(4):
                conn.execute("INSERT INTO shop_order DEFAULT VALUES")
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            assert conn.execute("SELECT wal_status FROM pg_replication_slots").fetchone()[0] == "lost"
        second = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", "--name", name, env=env)
        try:
            second.wait_for_line(": live", timeout=20, stream="stderr")
            with psycopg.connect(url, autocommit=True) as conn:
                pk = conn.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id").fetchone()[0]
            second.wait_for(lambda _: [j for j in second.json_lines() if j["payload"].get("pk") == pk])
        finally:
            second.stop()
        states = "\n".join(second.stderr_lines)
        assert ": behind_retention" in states and "was invalidated (max_slot_wal_keep_size)" in states
        # A server without logical decoding: `check` says so in one line.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_level = 'replica'")
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
        server.stop()
        server.start()
        result = subprocess.run([*ManagedProcess.command(), "check", "--database", "default"], env=env,
                                capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1
        assert "(pgnotify.E032) The WAL source needs wal_level = logical; the server has replica." in result.stderr
    finally:
        server.stop()


def database_state() -> dict:
    with psycopg.connect(autocommit=True, **listener_conninfo()) as conn:
        triggers = {name for (name,) in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'shop_product'::regclass AND NOT tgisinternal")}
        published = {name for (name,) in conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'pgnotify'")}
        identity = conn.execute("SELECT relreplident FROM pg_class WHERE oid = 'shop_product'::regclass").fetchone()[0]
    return {"triggers": triggers, "published": published, "identity": identity}


def test_migrate_switches_between_the_sources(wal, settings):
    from pgnotify.schema.triggers import sync_triggers

    state = database_state()
    assert state["triggers"] == set() and state["identity"] == "f"  # no change trigger, no cache trigger
    assert {"shop_order", "shop_product", "auth_user", "pgnotify_chatmessage"} <= state["published"]
    settings.PGNOTIFY = {**settings.PGNOTIFY, "SOURCE": "notify"}
    sync_triggers()
    sync_publication()
    state = database_state()
    assert {"pgnotify_change", "pgnotify_cache"} <= state["triggers"]
    assert state["published"] == set() and state["identity"] == "d"


async def test_a_slot_retaining_more_than_the_threshold_is_warned_about(wal, caplog):
    run = InProcess(channels=("orders",))
    run.listener.retained_warning = 1  # byte
    async with run:
        await asyncio.to_thread(execute, "INSERT INTO shop_order DEFAULT VALUES")
        await run.sink.wait_for(lambda: run.on("orders"))
        await eventually_async(lambda: run.listener.stats.wal is not None, 5)
    wal_stats = run.listener.stats.snapshot()["wal"]
    assert wal_stats["slot"] == run.listener.slot and wal_stats["retained_bytes"] > 1
    assert f"replication slot {run.listener.slot} retains" in caplog.text


async def test_messages_read_before_an_error_in_the_same_read_are_handed_out_first(wal):
    """The walsender is ended after it sent a transaction and before the stream was read: the
    transaction's messages and the server's error arrive in one read. The messages come out
    first; the error on the next read."""
    conninfo = listener_conninfo()
    slot = f"pgnotify_test_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(autocommit=True, **conninfo) as conn:
        await conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
        wal_conn = await psycopg.AsyncConnection.connect(autocommit=True, replication="database", **conninfo)
        try:
            stream = ReplicationStream(wal_conn)
            await stream.start(slot, "pgnotify", 0)
            order = await database_sync_to_async(Order.objects.create)(quantity=3)
            cursor = await conn.execute("SELECT pg_current_wal_lsn()")
            (written,) = await cursor.fetchone()
            async def sent() -> bool:  # the walsender sent the transaction (it writes each message out)
                cursor = await conn.execute("SELECT sent_lsn >= %s FROM pg_stat_replication WHERE pid = %s",
                                            [written, wal_conn.info.backend_pid])
                return (await cursor.fetchone())[0]

            await eventually_async(sent, 5, "the walsender to send the transaction")
            cursor = await conn.execute("SELECT pg_terminate_backend(%s, 5000)", [wal_conn.info.backend_pid])
            assert (await cursor.fetchone())[0]
            messages = stream.poll()
            with pytest.raises(psycopg.OperationalError, match="terminating connection"):
                stream.poll()
        finally:
            await wal_conn.close()
            await conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    decoded = [message for _, message in map(parse_copy_data, messages)]
    assert [(m.op, m.new[0]) for m in decoded if isinstance(m, Change)] == [("INSERT", str(order.pk))]
    kinds = [type(m) for m in decoded]
    assert Commit in kinds[kinds.index(Change):]  # the whole transaction
