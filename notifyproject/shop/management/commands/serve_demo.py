import signal
import subprocess
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server (daphne) and the listener together until Ctrl-C or SIGTERM stops both."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, **options):
        python = sys.executable
        processes = [
            subprocess.Popen([python, "manage.py", "listen_notify"]),
            subprocess.Popen([python, "-m", "daphne", "-b", options["host"], "-p", options["port"],
                              "notifyproject.asgi:application"]),
        ]
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
        self.stdout.write(f"Dashboard: http://{options['host']}:{options['port']}/dashboard/  "
                          "(Ctrl-C stops the server and the listener)")
        # When one of the two dies on its own, stop the other too.
        while not stopping and all(process.poll() is None for process in processes):
            try:
                processes[0].wait(0.5)
            except subprocess.TimeoutExpired:
                pass
        stop(None, None)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
