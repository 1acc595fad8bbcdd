import sys

from django.core.management.base import BaseCommand, CommandError

from pgnotify import notify
from pgnotify.exceptions import PgNotifyError


class Command(BaseCommand):
    help = "Send one notification: notify CHANNEL PAYLOAD ('-' reads the payload from standard input)."

    def add_arguments(self, parser):
        parser.add_argument("channel")
        parser.add_argument("payload", help="the payload text, or '-' to read standard input")

    def handle(self, *args, **options):
        payload = options["payload"]
        if payload == "-":
            # `echo text | notify C -` sends "text": the line's end is the shell's, not the payload's.
            payload = sys.stdin.read().removesuffix("\n")
        try:
            notify(options["channel"], payload)
        except (PgNotifyError, ValueError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"📤 sent {len(payload.encode())} bytes on '{options['channel']}'")
