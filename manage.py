#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
    from notifyproject import embedded_db

    embedded_db.use_unless_configured()  # no DATABASE_URL: this checkout's embedded PostgreSQL
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
