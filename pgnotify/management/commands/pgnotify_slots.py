from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from pgnotify.connection import listener_conninfo
from pgnotify.listener.wal.slots import drop_slot_sync, list_slots, slot_name


class Command(BaseCommand):
    help = ("List the WAL source's replication slots of this database (what each retains), or drop a "
            "retired listener name's slot.")
    requires_system_checks = []  # an operator's tool: it must work whatever the checks say

    def add_arguments(self, parser):
        parser.add_argument("--drop", metavar="NAME",
                            help="drop the slot of listener name NAME (--name of listen_notify)")
        parser.add_argument("--drop-slot", metavar="SLOT", help="drop the slot called SLOT (as listed)")

    def handle(self, *args, **options):
        import psycopg

        try:
            with psycopg.connect(autocommit=True, **listener_conninfo()) as conn:
                if options["drop"] or options["drop_slot"]:
                    database = connections["default"].settings_dict["NAME"]
                    slot = options["drop_slot"] or slot_name(options["drop"], conn.info.dbname or database)
                    if not drop_slot_sync(conn, slot):
                        raise CommandError(f"no replication slot {slot} in this database")
                    self.stdout.write(f"dropped replication slot {slot}")
                    return
                slots = list_slots(conn)
        except psycopg.errors.ObjectInUse as error:
            raise CommandError(f"the slot is in use by a running listener: stop it first ({error})") from error
        except psycopg.OperationalError as error:
            raise CommandError(f"cannot reach the database: {str(error).strip().splitlines()[0]}") from error
        if not slots:
            self.stdout.write("no pgnotify replication slots in this database")
            return
        self.stdout.write(f"{'slot':<52} {'active':<7} {'wal_status':<11} {'retained':>12} {'confirmed':>12}")
        for info in slots:
            retained = "-" if info.retained_bytes is None else f"{info.retained_bytes / 2**20:,.1f} MB"
            age = "never" if info.confirmed_age_s is None else f"{info.confirmed_age_s:,.0f} s ago"
            self.stdout.write(f"{info.slot:<52} {'yes' if info.active_pid else 'no':<7} {info.wal_status or '-':<11} "
                              f"{retained:>12} {age:>12}")
