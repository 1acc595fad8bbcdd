"""The WAL source's side of `migrate`: one publication for the watched and cache-invalidated
tables, and each watched table's replica identity.

With PGNOTIFY["SOURCE"] = "wal" the publication `pgnotify` lists exactly those tables
(`publish_via_partition_root`: a partitioned table's changes come as its own), and each watched
table gets the replica identity its WATCH entry asks for: FULL by default (UPDATE and DELETE
carry the whole old row, which `changed`, a DELETE's `row` and unchanged TOASTed values need),
or DEFAULT (`"replica_identity": "default"`: less WAL per UPDATE; the events then lack
`changed`, a DELETE's `row` holds only the key, and a large value an UPDATE did not touch is
missing from `row`). A table with DEFAULT identity is published with a column list (PostgreSQL
15+), so its excluded columns never leave the server; PostgreSQL refuses a column list on a table
whose identity is FULL (the old row must be whole), so there the listener drops the excluded
columns as it decodes, before anything is made of them.

With SOURCE "notify" the publication is dropped and the replica identities set back to DEFAULT.
"""

import logging

from django.apps import apps
from django.db import connections
from psycopg import sql

from . import conf
from .listener.wal.slots import PUBLICATION

logger = logging.getLogger(__name__)

IDENTITIES = ("full", "default")

_PUBLISHED = """
    SELECT c.relname, coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attname IS NOT NULL), '{}')
      FROM pg_publication_rel pr
      JOIN pg_publication p ON p.oid = pr.prpubid
      JOIN pg_class c ON c.oid = pr.prrelid
      LEFT JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs)
     WHERE p.pubname = %s GROUP BY c.relname
"""
_IDENTITY = "SELECT relreplident FROM pg_class WHERE oid = to_regclass(%s)"
_COLUMNS = """
    SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped
     ORDER BY attnum
"""


def desired() -> dict[str, tuple[str | None, set[str]]]:
    """table -> (replica identity, or None for a table only cache-invalidated; excluded columns)."""
    wanted: dict[str, tuple[str | None, set[str]]] = {}
    for label, options in conf.watch().items():
        model = apps.get_model(label)
        identity = options.get("replica_identity", "full")
        excluded = {model._meta.get_field(name).column for name in options.get("exclude", [])}
        wanted[model._meta.db_table] = (identity, excluded)
    for label in conf.get("CACHE_INVALIDATE"):
        wanted.setdefault(apps.get_model(label)._meta.db_table, (None, set()))
    return wanted


def sync_publication(using: str = "default") -> list[str]:
    """Make the publication and replica identities match the settings; returns what changed."""
    connection = connections[using]
    actions: list[str] = []
    with connection.cursor() as cursor:
        raw = cursor.connection
        cursor.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s", [PUBLICATION])
        exists = cursor.fetchone()[0] > 0
        if conf.source() != "wal":
            if exists:  # switching back: what the WAL source set goes
                cursor.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(PUBLICATION)).as_string(raw))
                actions.append(f"dropped publication {PUBLICATION}")
                for table, (identity, _) in desired().items():
                    if identity is not None:
                        actions += _set_identity(cursor, raw, table, "default")
            return actions
        tables = []
        for table, (identity, excluded) in desired().items():
            if identity is not None:
                actions += _set_identity(cursor, raw, table, identity)
            cursor.execute(_COLUMNS, [table])
            columns = [name for (name,) in cursor.fetchall()]
            # A column list only where it is allowed and needed (see the module's docstring).
            listed = [c for c in columns if c not in excluded] if excluded and identity == "default" else None
            tables.append((table, listed))
        cursor.execute(_PUBLISHED, [PUBLICATION])
        published = {table: (columns or None) for table, columns in cursor.fetchall()}
        if exists and published == dict(tables):
            return actions
        targets = sql.SQL(", ").join(_target(table, listed) for table, listed in tables)
        if not tables:
            statement = sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(PUBLICATION))
        elif exists:
            statement = sql.SQL("ALTER PUBLICATION {} SET {}").format(sql.Identifier(PUBLICATION), targets)
        else:
            statement = sql.SQL("CREATE PUBLICATION {} FOR {} WITH (publish_via_partition_root = true)").format(
                sql.Identifier(PUBLICATION), targets)
        cursor.execute(statement.as_string(raw))
        actions.append(f"{'updated' if exists else 'created'} publication {PUBLICATION} "
                       f"({', '.join(table for table, _ in tables) or 'no tables'})")
    for action in actions:
        logger.debug("pgnotify: %s", action)
    return actions


def _target(table: str, columns: list[str] | None) -> sql.Composable:
    if columns is None:
        return sql.SQL("TABLE {}").format(sql.Identifier(table))
    return sql.SQL("TABLE {} ({})").format(sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))


def _set_identity(cursor, raw, table: str, identity: str) -> list[str]:
    cursor.execute(_IDENTITY, [table])
    row = cursor.fetchone()
    if row is None or row[0] == identity[0]:
        return []
    cursor.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
        sql.Identifier(table), sql.SQL(identity.upper())).as_string(raw))
    return [f"replica identity {identity.upper()} on {table}"]


def sync_publication_after_migrate(sender, using="default", verbosity=1, **kwargs):
    if connections[using].vendor != "postgresql":
        return
    for action in sync_publication(using):
        if verbosity >= 1:
            print(f"  pgnotify: {action}")
