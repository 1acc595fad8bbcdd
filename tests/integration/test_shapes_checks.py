"""What a trigger cannot serve is refused by `manage.py check` with its own id and a hint; the trigger
sync, and the WAL source's publication sync, never stop at one bad WATCH entry; partitions
attached later are watched at `migrate`, and the listener warns about them until then."""

import json
import subprocess
import sys

import psycopg
import pytest
from django.conf import settings
from django.core import checks as django_checks
from django.db import connection
from django.test import override_settings

from notifyproject.shop.demo import Inbox
from pgnotify import checks
from pgnotify.connection import listener_conninfo
from pgnotify.schema.publication import sync_publication
from pgnotify.schema.tables import TableName, fetch_table_facts
from pgnotify.schema.triggers import sync_triggers
from pgnotify.schema.watched import Target, WatchedTable, refusal
from tests.helpers import support
from tests.helpers.schema import TRIGGER_COMMENTS
from tests.helpers.sources import source_env, use_source

GOOD = settings.PGNOTIFY


def watching(**entries) -> dict:
    return {**GOOD, "WATCH": {**GOOD["WATCH"], **entries}}


def found_with(pgnotify: dict) -> list:
    with override_settings(PGNOTIFY=pgnotify):
        found = [*checks.check_watch(), *checks.check_watched_tables(databases=["default"])]
    assert all("\n" not in message.msg for message in found)
    return found


@pytest.mark.django_db
def test_the_test_settings_watch_every_shape_without_a_word():
    assert found_with(GOOD) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("entries", "expected", "in_message", "in_hint"), [
    ({"shapes.ItemView": {"channel": "v"}}, "pgnotify.E020", "shapes_item_view is a view", "tables it reads from"),
    ({"shapes.Unkeyed": {"channel": "u"}}, "pgnotify.E021", "no primary key or unique index on (id)",
     "primary key"),
    ({"shapes.BaseItem": {"channel": "b", "exclude": ["id"]}}, "pgnotify.E022", "part of the primary key",
     "cannot be excluded"),
    ({"shapes.CompositeItem": {"channel": "c", "exclude": ["code"]}}, "pgnotify.E022", "'code'", "`pk`"),
    ({"shapes.Place": None}, "pgnotify.W021", "inherits fields from shapes.Place", "WATCH shapes.Place too"),
], ids=["view", "no key", "excluded key", "excluded composite key column", "child without parent"])
def test_what_a_trigger_cannot_serve_is_refused_with_a_hint(entries, expected, in_message, in_hint):
    pgnotify = watching(**entries)
    pgnotify["WATCH"] = {label: options for label, options in pgnotify["WATCH"].items() if options}
    (message,) = found_with(pgnotify)
    assert message.id == expected and in_message in message.msg and in_hint in message.hint
    assert message.level == (django_checks.WARNING if expected.startswith("pgnotify.W") else django_checks.ERROR)


@pytest.mark.django_db
def test_a_partitioned_table_whose_key_holds_the_models_key_is_accepted():
    # shapes_sample's primary key is (id, ts), as PostgreSQL requires of a table partitioned on ts;
    # shapes.Sample's is id. A table whose unique keys all lack the model's key is still refused.
    assert found_with(watching(**{"shapes.Sample": {"channel": "s"}})) == []
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE shapes_sample_other (id integer, ts date, v integer, PRIMARY KEY (ts, v))")
        try:
            (facts,) = fetch_table_facts(cursor, [TableName("", "shapes_sample_other")]).values()
        finally:
            cursor.execute("DROP TABLE shapes_sample_other")
    table = WatchedTable(TableName("", "shapes_sample_other"), ("id",), targets=[Target("s", "shapes.sample", ())])
    assert refusal(table, facts) == ("key", "shapes_sample_other has no primary key or unique index on (id): "
                                            "old and new rows cannot be paired")


def test_migrate_attaches_the_triggers_of_a_partitioned_table_keyed_with_its_partition_column(
        tmp_path, throwaway_database):
    _, url = throwaway_database
    env = support.process_env(DATABASE_URL=url)
    manage = [sys.executable, str(support.ROOT / "manage.py"), "migrate", "--noinput"]
    # The first migrate makes the table; the second checks it (E021 stopped it, for every app).
    first = subprocess.run(manage, cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=120)
    second = subprocess.run(manage, cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=120)
    for result in (first, second):
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert [line for line in result.stderr.splitlines() if line.startswith("  pgnotify")] == []
    assert "pgnotify.E021" not in second.stderr
    assert {"  pgnotify: attached pgnotify_change on shapes_sample",
            "  pgnotify: attached pgnotify_change on shapes_sample_2026_01 (partition of shapes_sample)",
            "  pgnotify: attached pgnotify_change on shapes_sample_2026_02 (partition of shapes_sample)",
            } <= set(first.stdout.splitlines())


@pytest.mark.django_db
def test_a_view_is_refused_for_cache_invalidation_too():
    (message,) = found_with({**GOOD, "CACHE_INVALIDATE": {**GOOD["CACHE_INVALIDATE"], "shapes.ItemView": ["v"]}})
    assert message.id == "pgnotify.E020"


@pytest.mark.django_db(transaction=True)
def test_an_unmanaged_model_whose_table_is_missing_is_a_warning():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE shapes_unkeyed RENAME TO shapes_unkeyed_away")
        try:
            (missing,) = found_with(watching(**{"shapes.Unkeyed": {"channel": "u"}}))
        finally:
            cursor.execute("ALTER TABLE shapes_unkeyed_away RENAME TO shapes_unkeyed")
    assert missing.id == "pgnotify.W023" and "shapes_unkeyed does not exist" in missing.msg


def test_manage_py_check_refuses_the_view_in_one_line(tmp_path):
    (tmp_path / "view_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "PGNOTIFY = {**PGNOTIFY, 'WATCH': {**PGNOTIFY['WATCH'], 'shapes.ItemView': {'channel': 'v'}}}  # noqa: F405\n")
    env = support.process_env(DJANGO_SETTINGS_MODULE="view_settings", PYTHONPATH=f"{tmp_path}:{support.ROOT}")
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "check", "--database", "default"],
                            cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "(pgnotify.E020) shapes.ItemView: shapes_item_view is a view" in result.stderr


def test_check_with_the_database_down_warns_within_seconds():
    env = support.process_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{support.free_port()}/nowhere")
    result = subprocess.run([sys.executable, str(support.ROOT / "manage.py"), "check", "--database", "default"],
                            cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and "(pgnotify.W020) pgnotify could not inspect the watched tables" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.django_db(transaction=True)
def test_the_sync_does_everything_it_can_and_reports_the_rest_in_one_line_each():
    before = dict(trigger_comments())
    bad = {"shapes.ItemView": {"channel": "v"}, "shapes.Unkeyed": {"channel": "u"}, "shapes.Nope": {"channel": "n"}}
    # The bad entries come first, a changed good one after them: it is refreshed all the same.
    pgnotify = {**GOOD, "WATCH": {**bad, **GOOD["WATCH"], "shapes.SchemaItem": {"channel": "schema_v2"}}}
    try:
        with override_settings(PGNOTIFY=pgnotify):
            result = sync_triggers()
        assert list(result) == ["refreshed pgnotify_change on shapes_other.items"]
        assert sorted(result.problems) == [
            "could not watch 'shapes.ItemView': shapes_item_view is a view: no trigger can report its changes",
            "could not watch 'shapes.Nope': no such model",
            "could not watch 'shapes.Unkeyed': shapes_unkeyed has no primary key or unique index on (id): "
            "old and new rows cannot be paired",
        ]
    finally:
        sync_triggers()
    assert trigger_comments() == before


def trigger_comments() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(TRIGGER_COMMENTS)
        return dict(cursor.fetchall())


def test_migrate_reports_a_bad_entry_and_goes_on(tmp_path, throwaway_database):
    _, url = throwaway_database
    (tmp_path / "view_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "PGNOTIFY = {**PGNOTIFY, 'WATCH': {'shapes.ItemView': {'channel': 'v'}, **PGNOTIFY['WATCH']}}  # noqa: F405\n")
    env = support.process_env(DJANGO_SETTINGS_MODULE="view_settings", PYTHONPATH=f"{tmp_path}:{support.ROOT}",
                              DATABASE_URL=url)
    manage = [sys.executable, str(support.ROOT / "manage.py"), "migrate", "--noinput"]
    view_line = ("  pgnotify: could not watch 'shapes.ItemView': shapes_item_view is a view: "
                 "no trigger can report its changes")

    # A new database: the view comes with migrate, so the checks cannot refuse it yet; the sync does.
    first = subprocess.run(manage, cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "pgnotify: attached pgnotify_change on shop_order" in first.stdout
    assert "pgnotify: attached pgnotify_change on shapes_amount" in first.stdout  # after the view in WATCH
    assert [line for line in first.stderr.splitlines() if line.startswith("  pgnotify")] == [view_line]

    # Now that the view is there, the checks refuse it, in one line; past them, the sync reports it.
    refused = subprocess.run(manage, cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "(pgnotify.E020) shapes.ItemView: shapes_item_view is a view" in refused.stderr
    skipped = subprocess.run([*manage, "--skip-checks"], cwd=support.ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert skipped.returncode == 0 and "pgnotify: attached" not in skipped.stdout
    assert [line for line in skipped.stderr.splitlines() if line.startswith("  pgnotify")] == [view_line]


@pytest.fixture
def late_partition(transactional_db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE shapes_reading_late PARTITION OF shapes_reading FOR VALUES FROM (2000) TO (3000)")
    yield "shapes_reading_late"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE shapes_reading_late")


def test_a_partition_attached_later_is_watched_at_migrate_and_warned_about_until_then(listener, late_partition):
    process = listener("--name", "late-partition")
    process.wait_for_line(f"partition {late_partition} of watched table shapes_reading has no pgnotify trigger",
                          stream="stderr")
    assert sync_triggers() == [f"attached pgnotify_change on {late_partition} (partition of shapes_reading)",
                               f"attached pgnotify_cache on {late_partition} (partition of shapes_reading)"]
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as conn:
        inbox = Inbox(conn, "late", timeout=5.0)
        inbox.listen("shapes_reading")
        conn.execute(f"INSERT INTO {late_partition} (id, sensor, val) VALUES (2001, 'late', 1)")
        (item,) = inbox.rest()
    assert '"table": "shapes_reading"' in item.payload and '"pk": 2001' in item.payload
    process.wait_for_line('"pk":2001')


# -- the same with the WAL source: the publication and replica identities

PUBLICATION_STATE = """
    SELECT (SELECT coalesce(array_agg(schemaname || '.' || tablename ORDER BY 1), '{}')
              FROM pg_publication_tables WHERE pubname = 'pgnotify'),
           (SELECT pubviaroot FROM pg_publication WHERE pubname = 'pgnotify'),
           (SELECT json_object_agg(oid::regclass::text, relreplident)
              FROM pg_class WHERE relname LIKE 'shapes\\_%%' AND relkind IN ('r', 'p'))
"""


def publication_state() -> tuple[list[str], bool, dict]:
    with connection.cursor() as cursor:
        cursor.execute(PUBLICATION_STATE)
        published, via_root, identities = cursor.fetchone()
    return published, via_root, json.loads(identities) if isinstance(identities, str) else identities


@pytest.mark.django_db(transaction=True)
def test_the_publication_sync_publishes_every_shape_and_reports_the_rest_in_one_line_each():
    bad = {"shapes.ItemView": {"channel": "v"}, "shapes.Unkeyed": {"channel": "u"}}
    wal = {**GOOD, "SOURCE": "wal", "WATCH": {**bad, **GOOD["WATCH"]}}
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE shapes_amount SET UNLOGGED")  # the WAL has nothing of it
    try:
        (unlogged,) = found_with({**GOOD, "SOURCE": "wal"})  # a trigger would serve it: no word from the NOTIFY source
        assert found_with(GOOD) == []
        with override_settings(PGNOTIFY=wal):
            result = sync_publication()
        published, via_root, identities = publication_state()
    finally:
        sync_publication()  # back to the NOTIFY source: the publication goes, identities back to DEFAULT
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE shapes_amount SET LOGGED")
    assert unlogged.id == "pgnotify.E036" and "shapes_amount is an unlogged table" in unlogged.msg
    assert "SET LOGGED" in unlogged.hint
    assert sorted(result.problems) == [
        "could not watch 'shapes.Amount': shapes_amount is an unlogged table: the WAL holds none of its changes",
        "could not watch 'shapes.ItemView': shapes_item_view is a view: no trigger can report its changes",
        "could not watch 'shapes.Unkeyed': shapes_unkeyed has no primary key or unique index on (id): "
        "old and new rows cannot be paired",
    ]
    assert "created publication pgnotify" in result and "published shapes_other.items" in result
    assert "replica identity FULL on shapes_reading_high_b (partition of shapes_reading)" in result
    assert "replica identity FULL on shapes_sample_2026_02 (partition of shapes_sample)" in result
    # Every other shape is published: the schema's table by its schema, the partitioned table as one
    # (its partitions' changes come as its own), the model and its proxy's table once.
    assert {"public.shop_order", "public.shapes_compositeitem", "shapes_other.items", "public.shapes_baseitem",
            "public.shapes_reading", "public.shapes_place", "public.shapes_restaurant",
            "public.shapes_sample"} <= set(published)
    assert not {"public.shapes_amount", "public.shapes_reading_low", "public.shapes_unkeyed"} & set(published)
    assert via_root is True
    assert {table: identity for table, identity in identities.items() if identity != "f"} == {
        "shapes_amount": "d", "shapes_unkeyed": "d"}
    assert set(publication_state()[2].values()) == {"d"}  # and back


def test_a_partition_attached_later_gets_its_replica_identity_at_migrate_and_is_warned_about_until_then(
        settings, listener):
    with use_source("wal", settings):
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE shapes_reading_late PARTITION OF shapes_reading "
                           "FOR VALUES FROM (2000) TO (3000)")
        process = None
        try:
            process = listener("--name", "late-partition-wal", env=source_env("wal"))
            process.wait_for_line("partition shapes_reading_late of watched table shapes_reading lacks replica "
                                  "identity FULL", stream="stderr")
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO shapes_reading_late (id, sensor, val) VALUES (2001, 'late', 1)")
                cursor.execute("UPDATE shapes_reading_late SET val = 2")  # no old row: no `changed`
            assert list(sync_publication()) == ["replica identity FULL on shapes_reading_late "
                                                "(partition of shapes_reading)"]
            with connection.cursor() as cursor:
                cursor.execute("UPDATE shapes_reading_late SET val = 3")
            events = process.wait_for(lambda lines: len(found := [
                j["payload"] for j in process.json_lines() if j["channel"] == "shapes_reading"]) >= 3 and found)
        finally:
            if process is not None:
                process.stop()  # before the slot is dropped
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE shapes_reading_late")
    assert [(e["op"], e["table"], e["pk"], e.get("changed")) for e in events] == [
        ("INSERT", "shapes_reading", 2001, None), ("UPDATE", "shapes_reading", 2001, None),
        ("UPDATE", "shapes_reading", 2001, ["val"])]
