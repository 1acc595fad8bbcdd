"""Least privilege (docs/operations.md, "Rights"): every line of the rights table proved with real
roles that are not superusers. An owner role migrates; a writer role with only the documented
grants writes; a role that may not create functions or triggers gets them from a DBA through
`manage.py pgnotify_sql`; each missing right is a one-line `check` error naming its fix."""

import os
import re
import subprocess

import psycopg
import pytest
from psycopg import sql

from notifyproject.shop.demo import Inbox
from pgnotify.connection import listener_conninfo
from tests.helpers import support
from tests.helpers.schema import PGNOTIFY_OBJECTS, manage, query

# What docs/operations.md says a writer needs besides its own tables, with the NOTIFY source.
WRITER_GRANTS = ("GRANT INSERT, SELECT ON pgnotify_event TO {role}",
                 "GRANT USAGE ON SEQUENCE pgnotify_event_id_seq TO {role}")
# A writer's rights on the application's own tables (identity columns need no sequence grant).
APP_GRANTS = ("GRANT SELECT, INSERT, UPDATE, DELETE ON shop_order, shop_product, auth_user TO {role}",
              "GRANT USAGE ON SEQUENCE shop_order_number_seq TO {role}")
# An application role with DML on every table there is (but owning none).
ALL_GRANTS = ("GRANT USAGE ON SCHEMA shapes_other TO {role}",  # tests.shapes has a table there
              "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, shapes_other TO {role}",
              "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public, shapes_other TO {role}")
WRITE_ORDER = "INSERT INTO shop_order DEFAULT VALUES RETURNING id"


def role_url(url: str, role: str) -> str:
    return re.sub(r"://[^@/]*@", f"://{role}@", url, count=1)


def run_as_admin(database: str, *statements: str, **names: str) -> None:
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": database}) as admin:
        for statement in statements:
            admin.execute(sql.SQL(statement).format(**{key: sql.Identifier(value) for key, value in names.items()}))


def pgnotify_lines(output: str, prefix: str = "pgnotify.E07") -> list[str]:
    return [line for line in output.splitlines() if prefix in line]


@pytest.fixture
def roles(throwaway_database):
    """The throwaway database owned by a login role that is not a superuser (`owner`), and a
    second login role (`writer`) with no rights yet."""
    name, url = throwaway_database
    owner, writer = f"pgnotify_owner_{os.getpid()}", f"pgnotify_writer_{os.getpid()}"
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as admin:
        for role in (owner, writer):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
            yield {"name": name, "url": url, "owner": owner, "writer": writer,
                   "owner_url": role_url(url, owner), "writer_url": role_url(url, writer)}
        finally:
            with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": name}) as conn:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE database = current_database() AND active_pid IS NULL")
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (owner, writer):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def grant(roles: dict, statements, role: str) -> None:
    run_as_admin(roles["name"], *(s.replace("{role}", "{r}") for s in statements), r=role)


def listener(url: str, **env: str) -> support.ManagedProcess:
    process = support.ManagedProcess("listen_notify", env=support.process_env(DATABASE_URL=url, **env))
    process.wait_for_line("live", timeout=30)
    return process


def write_order_as(url: str) -> int:
    with psycopg.Connection.connect(url, autocommit=True) as conn:
        return conn.execute(WRITE_ORDER).fetchone()[0]


def test_an_owner_migrates_with_the_notify_source_and_a_writer_with_the_documented_grants_is_heard(roles):
    migrate = manage(roles["owner_url"], "migrate", "--noinput")
    assert migrate.returncode == 0, migrate.stderr
    assert "  pgnotify: attached pgnotify_change on shop_order" in migrate.stdout.splitlines()
    assert pgnotify_lines(migrate.stderr, "pgnotify: could not") == []
    grant(roles, APP_GRANTS, roles["writer"])

    check = manage(roles["writer_url"], "check", "--database", "default")
    [line] = pgnotify_lines(check.stderr, "pgnotify.E072")
    assert f"role {roles['writer']} " in line and "pgnotify_event" in line
    for statement in WRITER_GRANTS:
        assert statement.format(role=roles["writer"]) in check.stderr
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the trigger runs as the writer
        write_order_as(roles["writer_url"])

    grant(roles, WRITER_GRANTS, roles["writer"])
    assert pgnotify_lines(manage(roles["writer_url"], "check", "--database", "default").stderr,
                          "pgnotify.E072") == []
    owner_check = manage(roles["owner_url"], "check", "--database", "default")
    assert owner_check.returncode == 0 and pgnotify_lines(owner_check.stderr) == [], owner_check.stderr
    process = listener(roles["owner_url"])
    try:
        pk = write_order_as(roles["writer_url"])
        process.wait_for_line(f"INSERT shop_order pk={pk} ", timeout=10)
    finally:
        process.stop()


def test_an_owner_with_replication_migrates_with_the_wal_source_and_a_writer_needs_no_pgnotify_grant(roles):
    assert manage(roles["owner_url"], "migrate", "--noinput", "-v", "0").returncode == 0  # NOTIFY first
    # A listener name known to the database: the switch makes its slot, which needs REPLICATION.
    run_as_admin(roles["name"], "INSERT INTO pgnotify_listener (name, snapshot) "
                                "VALUES ('rights', pg_current_snapshot()::text)")
    skipped = manage(roles["owner_url"], "migrate", "--noinput", "--skip-checks", PGNOTIFY_SOURCE="wal")
    assert skipped.returncode == 1 and "Traceback" not in skipped.stderr, skipped.stderr
    last = skipped.stderr.splitlines()[-1]
    assert last.startswith("CommandError: pgnotify: could not create replication slot ")
    # PostgreSQL 15 and 16 say the first, 17 and later the second.
    assert last.endswith(("must be superuser or replication role to use replication slots",
                          "permission denied to use replication slots")), last
    check = manage(roles["owner_url"], "check", "--database", "default", PGNOTIFY_SOURCE="wal")
    [line] = pgnotify_lines(check.stderr, "pgnotify.E034")
    assert f"role {roles['owner']} has no REPLICATION" in line
    assert f"ALTER ROLE {roles['owner']} REPLICATION" in check.stderr and "rds_replication" in check.stderr

    run_as_admin(roles["name"], "ALTER ROLE {r} REPLICATION", r=roles["owner"])
    migrate = manage(roles["owner_url"], "migrate", "--noinput", PGNOTIFY_SOURCE="wal")
    assert migrate.returncode == 0, migrate.stderr
    assert "  pgnotify: dropped pgnotify_change on shop_order" in migrate.stdout.splitlines()
    assert any(line.startswith("  pgnotify: created replication slot ") for line in migrate.stdout.splitlines())
    assert pgnotify_lines(migrate.stderr, "pgnotify: could not") == []
    grant(roles, APP_GRANTS, roles["writer"])  # the WAL source asks nothing of writers
    check = manage(roles["writer_url"], "check", "--database", "default", PGNOTIFY_SOURCE="wal")
    assert pgnotify_lines(check.stderr, "pgnotify.E072") == []
    process = listener(roles["owner_url"], PGNOTIFY_SOURCE="wal")
    try:
        pk = write_order_as(roles["writer_url"])
        process.wait_for_line(f"INSERT shop_order pk={pk} ", timeout=15)
    finally:
        process.stop()


def run_script(database: str, script: str) -> None:
    """The DBA's part: the printed script, run by psql as the superuser."""
    conninfo = {**listener_conninfo(), "dbname": database}
    env = {**os.environ, "PGHOST": str(conninfo.get("host", "127.0.0.1")), "PGPORT": str(conninfo.get("port", 5432)),
           "PGUSER": str(conninfo.get("user", "postgres")), "PGDATABASE": database}
    if conninfo.get("password"):
        env["PGPASSWORD"] = str(conninfo["password"])
    done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=script, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_role_that_may_not_create_functions_or_triggers_gets_them_from_a_dba(roles):
    """The superuser owns every table; the application role has DML on them only. pgnotify is
    not migrated yet: the role can neither create its functions (no CREATE on the schema) nor
    attach its triggers (it owns no table)."""
    superuser_url = roles["url"]
    assert manage(superuser_url, "migrate", "--noinput", "-v", "0").returncode == 0
    assert manage(superuser_url, "migrate", "pgnotify", "zero", "--noinput", "-v", "0").returncode == 0
    app = roles["writer"]
    grant(roles, ALL_GRANTS, app)

    check = manage(roles["writer_url"], "check", "--database", "default")
    [line] = pgnotify_lines(check.stderr, "pgnotify.E071")
    assert f"role {app} has no CREATE on schema public" in line
    assert f"GRANT CREATE ON SCHEMA public TO {app}" in check.stderr and "pgnotify_sql" in check.stderr

    first = manage(roles["writer_url"], "pgnotify_sql")
    assert first.returncode == 0, first.stderr
    assert "CREATE OR REPLACE FUNCTION pgnotify_log_changes" in first.stdout
    assert "INSERT INTO django_migrations" in first.stdout
    assert "pgnotify_sql` again" in first.stdout  # the triggers need the functions first
    with psycopg.Connection.connect(autocommit=True, **{**listener_conninfo(), "dbname": roles["name"]}) as conn:
        assert query(conn, PGNOTIFY_OBJECTS) == set()  # printed, not run
        run_script(roles["name"], first.stdout)
        assert ("function pgnotify_invalidate_cache",) in query(conn, PGNOTIFY_OBJECTS)

        check = manage(roles["writer_url"], "check", "--database", "default")
        [line] = pgnotify_lines(check.stderr, "pgnotify.E070")  # one line for every table
        assert f"role {app} does not own " in line and "shop_order (owner " in line and "pgnotify_sql" in check.stderr
        [line] = pgnotify_lines(check.stderr, "pgnotify.E075")
        assert f"role {app} has no CREATE on schema public for the change functions of watched tables" in line
        migrate = manage(roles["writer_url"], "migrate", "--noinput", "--skip-checks")
        # The table's own change function comes first, and the role may not create it either.
        assert migrate.stderr.splitlines()[0] == ("  pgnotify: could not attach pgnotify_change on shop_order: "
                                                  "ProgrammingError: permission denied for schema public")

        second = manage(roles["writer_url"], "pgnotify_sql")
        assert second.returncode == 0, second.stderr
        assert "CREATE TRIGGER" in second.stdout and "COMMENT ON TRIGGER" in second.stdout
        assert 'CREATE OR REPLACE FUNCTION "pgnotify_change_shop_order_' in second.stdout  # the table's own
        assert "FUNCTION pgnotify_log_changes" not in second.stdout and "pgnotify_sql` again" not in second.stdout
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgnotify%'").fetchone() == (0,)
        run_script(roles["name"], second.stdout)

        check = manage(roles["writer_url"], "check", "--database", "default")
        assert check.returncode == 0 and pgnotify_lines(check.stderr, "pgnotify.E") == [], check.stderr
        assert manage(roles["writer_url"], "pgnotify_sql").stdout.strip() == "-- pgnotify: nothing to apply"
        again = manage(roles["writer_url"], "migrate", "--noinput")
        assert again.returncode == 0 and "pgnotify:" not in again.stdout + again.stderr, again.stderr

        inbox = Inbox(conn, "rights", timeout=10.0)
        inbox.listen("orders")
        pk = write_order_as(roles["writer_url"])
        event = inbox.next()
        assert event is not None and f'"pk": {pk},' in event.payload
