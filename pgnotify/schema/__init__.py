"""What pgnotify installs in the database and keeps in step with the settings at `migrate`: the
SQL functions as they are now (functions, sql/), the watched tables and what the database says
of them (watched, tables), the change and cache triggers (triggers), the WAL source's
publication (publication) and the slots handed over at a switch of source (switch), in the order
that loses nothing (install); and the same statements as a script for a DBA, with the rights
each part needs (rights)."""
