from django.core.management.base import BaseCommand, CommandError

from notifyproject.shop import traffic


class Command(BaseCommand):
    help = "Create, update and delete orders at a steady rate, so the dashboard has something to show."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=5.0, metavar="N", help="changes per second (default 5)")
        parser.add_argument("--duration", type=float, default=None, metavar="S",
                            help="stop after S seconds (default: until Ctrl-C)")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable mix")

    def handle(self, *args, **options):
        if not 0 < options["rate"] <= 10_000:
            raise CommandError("--rate must be between 0 and 10000 changes per second")
        if options["duration"] is not None and options["duration"] <= 0:
            raise CommandError("--duration must be positive")
        self.stdout.write(f"shop traffic: {options['rate']:g} changes/s on shop_order (Ctrl-C stops)")

        def report(done):
            self.stdout.write("  " + ", ".join(f"{op} {n}" for op, n in sorted(done.items())))

        try:
            done = traffic.run(options["rate"], options["duration"], options["seed"], report)
        except KeyboardInterrupt:
            return
        self.stdout.write("done: " + ", ".join(f"{op} {n}" for op, n in sorted(done.items())))
