from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections

from pgnotify.schema.rights import script


class Command(BaseCommand):
    help = ("Print, without running it, the SQL that `migrate` would run for pgnotify: its pending "
            "migrations (recorded as applied) and the triggers and publication the settings ask for, "
            "for a DBA to apply where the application's role may not create functions or triggers.")
    requires_system_checks = []  # for a role the checks may find wanting

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias (default: default)")
        parser.add_argument("--role", help="the role to GRANT the rights on new tables to (default: the database user)")

    def handle(self, *args, **options):
        using = options["database"]
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT quote_ident(current_user)")
            role = options["role"] or cursor.fetchone()[0]
        lines = script(using, role)
        if not lines:
            self.stdout.write("-- pgnotify: nothing to apply")
            return
        self.stdout.write(f"-- pgnotify: the SQL `migrate` would run, for a role that may run it (GRANTs to {role})")
        self.stdout.write("BEGIN;")
        for line in lines:
            self.stdout.write(line)
        self.stdout.write("COMMIT;")
