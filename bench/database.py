"""The bench databases: created afresh and migrated, on DATABASE_URL's server or the embedded one."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parent.parent


def base_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.path.insert(0, str(ROOT))
        from notifyproject import embedded_db

        url = embedded_db.database_url()
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def recreate(url: str, name: str, source: str = "notify") -> str:
    """Drops and creates database `name`, migrates it for the event source `source`, and returns its URL."""
    with psycopg.connect(**conninfo_to_dict(url), autocommit=True) as conn:
        drop_slots(conn, name)  # a database with replication slots cannot be dropped
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = with_database(url, name)
    env = {**os.environ, "DATABASE_URL": database_url, "PGNOTIFY_SOURCE": source}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    return database_url


def drop(url: str, name: str) -> None:
    with psycopg.connect(**conninfo_to_dict(url), autocommit=True) as conn:
        drop_slots(conn, name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_slots(conn: psycopg.Connection, database: str) -> None:
    conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s "
                 "AND active_pid IS NOT NULL", [database])
    conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                 [database])


def add_plain_table(url: str) -> None:
    """bench_plain: shop_order's columns and defaults, without the triggers (the baseline)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_plain (LIKE shop_order INCLUDING DEFAULTS)")
        conn.execute("ALTER TABLE bench_plain ADD PRIMARY KEY (id)")
        conn.execute("CREATE SEQUENCE bench_plain_id_seq OWNED BY bench_plain.id")
        conn.execute("ALTER TABLE bench_plain ALTER id SET DEFAULT nextval('bench_plain_id_seq')")


def settle(url: str, *database_urls: str) -> None:
    """Vacuum the databases earlier parts wrote to, then checkpoint the server: a latency run then
    pays neither autovacuum nor a checkpoint's writes for what came before it."""
    for database_url in dict.fromkeys(database_urls):
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("VACUUM")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def server_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.info.server_version
