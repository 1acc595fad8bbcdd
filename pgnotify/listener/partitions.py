"""Partitions that a watched partitioned table's triggers (or replica identity) do not cover.

A statement on a partition does not fire its partitioned table's statement-level triggers, so
`migrate` gives every partition triggers of its own. A partition created or attached since then
has none: writes straight to it send no events until the next `migrate`. With the WAL source, a
partition's changes come through its partitioned table's publication, but only with the old row
when the partition has replica identity FULL itself. The listener looks for such partitions at
start and once a minute (one catalog query) and warns."""

import psycopg

CHANGE_TRIGGER = "pgnotify_change"  # the name pgnotify.schema.triggers gives a watched table's change trigger

_UNWATCHED = """
    SELECT p.relid::regclass::text, t.tgrelid::regclass::text
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid AND c.relkind = 'p'
     CROSS JOIN LATERAL pg_partition_tree(t.tgrelid) p
      JOIN pg_class pc ON pc.oid = p.relid AND pc.relkind IN ('r', 'p')
     WHERE t.tgname = %(trigger)s AND NOT t.tgisinternal AND p.relid <> t.tgrelid
       AND NOT EXISTS (SELECT FROM pg_trigger u WHERE u.tgrelid = p.relid AND u.tgname = %(trigger)s)
     ORDER BY 2, 1
"""


async def unwatched_partitions(connection: psycopg.AsyncConnection) -> list[tuple[str, str]]:
    """(partition, partitioned table) for each partition of a watched table without a change trigger."""
    cursor = await connection.execute(_UNWATCHED, {"trigger": CHANGE_TRIGGER})
    return await cursor.fetchall()


# The WAL source: partitions of a published partitioned table with replica identity FULL that
# lack it themselves (PostgreSQL does not pass it on; `migrate` sets it on the partitions it finds).
_WITHOUT_IDENTITY = """
    SELECT p.relid::regclass::text, pr.prrelid::regclass::text
      FROM pg_publication_rel pr
      JOIN pg_publication pub ON pub.oid = pr.prpubid AND pub.pubname = %(publication)s
      JOIN pg_class c ON c.oid = pr.prrelid AND c.relkind = 'p' AND c.relreplident = 'f'
     CROSS JOIN LATERAL pg_partition_tree(pr.prrelid) p
      JOIN pg_class pc ON pc.oid = p.relid AND pc.relkind = 'r' AND pc.relreplident <> 'f'
     ORDER BY 2, 1
"""


async def partitions_without_full_identity(connection: psycopg.AsyncConnection,
                                           publication: str) -> list[tuple[str, str]]:
    """(partition, partitioned table) for each partition whose changes the WAL source gets without
    their old rows."""
    cursor = await connection.execute(_WITHOUT_IDENTITY, {"publication": publication})
    return await cursor.fetchall()
