"""A private PgBouncer in transaction mode in front of the test database (Debian's `pgbouncer`)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

from tests.helpers.support import free_port
from tests.helpers.waiting import eventually


def run_as(host: str) -> list[str]:
    """PgBouncer refuses to run as root: as root, it runs as a user that may reach the server (the
    owner of the socket directory of the embedded server, else postgres)."""
    if os.geteuid() != 0:
        return []
    return ["-u", Path(host).owner() if host and host.startswith("/") else "postgres"]


class PgBouncer:
    """`pgbouncer` with pool_mode=transaction on a free port of 127.0.0.1, trusting every client,
    its files in a directory of its own; `url` is the test database through it."""

    def __init__(self):
        binary = shutil.which("pgbouncer")
        if binary is None:
            pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)")
        settings = connection.settings_dict
        self.port = free_port()
        # Not under pytest's tmp_path (mode 0700): PgBouncer drops root for the postgres user.
        self.directory = Path(tempfile.mkdtemp(prefix="pgnotify-pgbouncer-"))
        self.directory.chmod(0o777)
        server = f"host={settings['HOST'] or '127.0.0.1'} port={settings['PORT'] or 5432} " \
                 f"dbname={settings['NAME']} user={settings['USER'] or 'postgres'}"
        if settings["PASSWORD"]:
            server += f" password={settings['PASSWORD']}"
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(f"""[databases]
pooled = {server}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.directory / "users.txt"}
pool_mode = transaction
ignore_startup_parameters = extra_float_digits
logfile = {self.directory / "pgbouncer.log"}
""")
        (self.directory / "users.txt").write_text(f'"{settings["USER"] or "postgres"}" ""\n')
        for path in self.directory.iterdir():
            path.chmod(0o644)
        self.process = subprocess.Popen([binary, *run_as(settings["HOST"]), str(ini)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        user_part = quote(settings["USER"] or "postgres", safe="")
        self.url = f"postgresql://{user_part}@127.0.0.1:{self.port}/pooled"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 10.0) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.process.stderr.read()} {self.log()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                return False

        eventually(answers, timeout, what=lambda: f"pgbouncer to answer at {self.url} (its log: {self.log()[-2000:]})",
                   interval=0.1)

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)
