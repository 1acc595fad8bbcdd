import os
import signal
import socket
import subprocess
import sys

from django.core.management.base import BaseCommand, CommandError


def port_taken(host: str, port: int) -> str | None:
    """Why host:port cannot be served, or None when it is free."""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as error:
        return error.strerror or str(error)


class Command(BaseCommand):
    help = ("Run the web server (daphne) and the listener together until Ctrl-C or SIGTERM stops both. "
            "Quiet by default; -v 2 (or PGNOTIFY_VERBOSE=1) prints a line per notification and every request.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, **options):
        host, port = options["host"], options["port"]
        problem = port_taken(host, port)
        if problem:
            raise CommandError(f"cannot serve on {host}:{port}: {problem} (another server runs there? "
                               f"stop it, or choose another port: make run PORT={port + 1})")
        verbose = options["verbosity"] >= 2 or os.environ.get("PGNOTIFY_VERBOSE", "") not in {"", "0"}
        python = sys.executable
        listener = [python, "manage.py", "listen_notify"] + ([] if verbose else ["--quiet", "--stats-interval", "30"])
        daphne = [python, "-m", "daphne", "-b", host, "-p", str(port), "notifyproject.asgi:application"]
        if not verbose:
            daphne[3:3] = ["--access-log", os.devnull]
        processes = [subprocess.Popen(listener), subprocess.Popen(daphne)]
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

        # Set explicitly: a shell may have started us with SIGINT ignored.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"Dashboard: http://{host}:{port}/dashboard/  (Ctrl-C stops the server and the listener"
                          f"{'' if verbose else '; make run VERBOSE=1 shows every notification'})")
        # When one of the two dies on its own, stop the other too.
        while not stopping and all(process.poll() is None for process in processes):
            try:
                processes[0].wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        died = None if stopping else next(p for p in processes if p.poll() is not None)
        stop(None, None)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        if died is not None:
            name = "the listener" if died is processes[0] else "the web server"
            raise CommandError(f"{name} exited with status {died.returncode}; the other was stopped")
