from django.core.management.base import BaseCommand, CommandError

from notifyproject.shop.demo import TIMEOUT, run_demo
from pgnotify.exceptions import PgNotifyError


class Command(BaseCommand):
    help = ("Run the LISTEN/NOTIFY walkthroughs (basic, multiple channels, JSON payloads, chat, change "
            "monitoring) against the configured database; exits non-zero if one did not receive what it sent.")
    requires_system_checks = ["database"]

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=TIMEOUT, metavar="S",
                            help="seconds to wait for each notification before calling it lost")

    def handle(self, *args, **options):
        try:
            run_demo(self.stdout.write, timeout=options["timeout"])
        except PgNotifyError as error:
            raise CommandError(str(error)) from error
