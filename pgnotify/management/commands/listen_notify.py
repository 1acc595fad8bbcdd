from django.conf import settings
from django.core.checks import Tags, run_checks
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from pgnotify import conf, runner
from pgnotify.connection import listener_conninfo
from pgnotify.exceptions import CannotListenError, PgNotifyError
from pgnotify.handlers.entries import configured_handlers, websocket_layer_configured
from pgnotify.handlers.output import Output
from pgnotify.listener import ListenerOptions
from pgnotify.sending import validate_channel

# The listener probes its sessions itself, and refuses in one line what this check would say.
LISTENER_PROBES = {"pgnotify.E051"}


def database_problems(database: str) -> list[str]:
    """The database checks on the database served, as `migrate` runs them, one line each. Reported,
    not fatal: the listener serves what it can and refuses on its own what it cannot (and a role
    that only listens lacks a writer's rights on purpose)."""
    try:
        messages = run_checks(tags=[Tags.database], databases=[database])
    finally:
        connections.close_all()  # the checks' Django connections: not held for the listener's life
    return [f"{message.id}: {message.msg}" + (f" {message.hint}" if message.hint else "")
            for message in messages if not message.is_silenced() and message.id not in LISTENER_PROBES]


class Command(BaseCommand):
    help = "LISTEN on the watched channels and hand every notification on (websockets, caches, output)."
    requires_system_checks = []  # the database checks run in handle(), on the database served

    def add_arguments(self, parser):
        parser.add_argument("--channel", action="append", default=[], metavar="C",
                            help="also listen on this channel (repeatable)")
        parser.add_argument("--name", default="default",
                            help="listener name: its position in the event log, shared by its standbys")
        parser.add_argument("--database", default="default", metavar="ALIAS",
                            help="the database alias to serve: one listener per database (default 'default')")
        parser.add_argument("--json", action="store_true", help="print one JSON object per line")
        parser.add_argument("--quiet", action="store_true",
                            help="no line per notification: state changes and a one-line summary per interval")
        parser.add_argument("--metrics-port", type=int, metavar="P",
                            help="serve Prometheus metrics on this port (at /metrics; needs pgnotify[metrics])")
        parser.add_argument("--metrics-host", default="127.0.0.1", metavar="H",
                            help="address the metrics server binds (default 127.0.0.1)")
        parser.add_argument("--skip-checks", action="store_true", help="skip the system checks")
        parser.add_argument("--stats-interval", type=float, default=60.0, metavar="S",
                            help="print statistics every S seconds (0: only at the end)")

    def handle(self, *args, **options):
        if options["json"] and options["quiet"]:
            raise CommandError("--json and --quiet exclude each other")
        try:
            extra = [validate_channel(channel) for channel in options["channel"]]
            if not options["name"] or len(options["name"]) > 200:
                raise CommandError("--name must be 1 to 200 characters")
            database = options["database"]
            if database not in settings.DATABASES:
                raise CommandError(f"--database {database!r} is not in DATABASES")
            if connections[database].vendor != "postgresql":
                raise CommandError(f"--database {database!r} is not a PostgreSQL database")
            if not options.get("skip_checks"):
                for problem in database_problems(database):
                    self.stderr.write(problem)
            listener_options = ListenerOptions(
                channels=conf.listen_channels(extra),
                name=options["name"],
                database=database,
                retention=conf.retention(),
            )
            output = Output(as_json=options["json"], quiet=options["quiet"],
                            stdout=self.stdout._out, stderr=self.stderr._out)
            handlers = configured_handlers()
            if not websocket_layer_configured():
                output.info("CHANNEL_LAYERS is not set: changes are not forwarded to websockets")
            if options["metrics_port"] is not None:
                from pgnotify.handlers.metrics import serve_metrics  # prometheus_client only when asked for

                handlers = [*handlers, serve_metrics(options["metrics_port"], options["metrics_host"])]
            runner.run(runner.run_listener(listener_conninfo(database), listener_options, output,
                                           handlers=handlers,
                                           stats_interval=options["stats_interval"]))
        except CannotListenError as error:
            raise CommandError(f"database {conf.direct_alias(options['database'])!r}: {error}") from error
        except PgNotifyError as error:
            raise CommandError(str(error)) from error
        if getattr(self, "_called_from_command_line", False):
            runner.exit_backstop()  # a thread stuck in a handler's call must not hold the exit
