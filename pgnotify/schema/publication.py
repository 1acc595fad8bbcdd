"""The WAL source's side of `migrate`: one publication for the watched and cache-invalidated
tables, and each watched table's replica identity.

With PGNOTIFY["SOURCE"] = "wal" the publication `pgnotify` lists exactly those tables, found as
the trigger sync finds them (pgnotify.schema.watched, pgnotify.schema.tables): by their schema, a model and its
proxies as one table. It publishes `via_partition_root`: a write to any partition of a
partitioned table, attached before or after, comes as a change of the partitioned table.

Each watched table gets the replica identity its WATCH entries ask for, and so does every
partition below a partitioned one (the partitions write the WAL; PostgreSQL does not pass a
partitioned table's identity on to them): FULL by default (UPDATE and DELETE carry the whole old
row, which `changed`, a DELETE's `row` and unchanged TOASTed values need), or DEFAULT when every
entry of the table says `"replica_identity": "default"` (less WAL per UPDATE; the events then
lack `changed`, a DELETE's `row` holds only the key, and a large value an UPDATE did not touch is
missing from `row`). A table with DEFAULT identity is published with a column list (PostgreSQL
15+) that leaves out the columns no entry shows, so they never leave the server. A column list
on a table whose identity is FULL makes every UPDATE of it fail (the old row must be whole), so
there the listener drops the excluded columns as it decodes, before anything is made of them; a
table's identity and its column list change in one transaction, so no writer sees one without
the other.

What cannot be published (a view, a table without a key, an unlogged table: the system checks
refuse them) is left out and reported in one line each; every other table is published all
the same, each in a transaction of its own.

With SOURCE "notify", or once pgnotify is migrated to zero, the publication is dropped and the
replica identities set back to DEFAULT. A publication that cannot be created (or altered) raises
WalSetupError: `migrate` fails in one line, the change triggers still attached.
"""

import logging

from django.db import DatabaseError, connections, transaction
from psycopg import sql

from .. import conf
from ..exceptions import WalSetupError, one_line
from ..listener.wal.slots import PUBLICATION
from .tables import Relation, TableFacts, TableName, fetch_table_facts
from .triggers import SyncResult, installed
from .watched import WatchedTable, refusal, wal_refusal, watched_tables

logger = logging.getLogger(__name__)

_PUBLICATION = "SELECT pubviaroot FROM pg_publication WHERE pubname = %s"
# Published tables: oid, name as the report gives it, column list (NULL: every column).
_PUBLISHED = """
    SELECT pr.prrelid, n.nspname, c.relname,
           CASE WHEN pr.prattrs IS NOT NULL THEN ARRAY(
               SELECT a.attname::text FROM pg_attribute a
                WHERE a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs) ORDER BY a.attnum) END
      FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
      JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE p.pubname = %s
"""
_IDENTITIES = "SELECT oid, relreplident::text FROM pg_class WHERE oid = ANY(%s)"

# A statement and the line that reports it (None: reported by another step).
Step = tuple[sql.Composable, str | None]


class _Sync:
    """One run of sync_publication: the cursor, and what it did and could not do."""

    def __init__(self, cursor, using: str):
        self.cursor, self.raw, self.using = cursor, cursor.connection, using
        self.result = SyncResult()

    def execute(self, statement: sql.Composable) -> None:
        self.cursor.execute(statement.as_string(self.raw))

    def identities(self, relations: list[tuple[Relation, str]], identity: str) -> list[Step]:
        """The statements setting `identity` on those relations that lack it, with their lines."""
        self.cursor.execute(_IDENTITIES, [[relation.oid for relation, _ in relations]])
        current = dict(self.cursor.fetchall())
        return [(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(relation.identifier, sql.SQL(identity.upper())),
                 f"replica identity {identity.upper()} on {display}")
                for relation, display in relations if current.get(relation.oid, identity[0]) != identity[0]]

    def apply(self, steps: list[Step], failure: str) -> bool:
        """Run (statement, line) steps in one transaction; on an error, none of them, a line, and False."""
        if not steps:
            return True
        try:
            with transaction.atomic(using=self.using):
                for statement, _ in steps:
                    self.execute(statement)
        except DatabaseError as error:
            self.result.problems.append(f"{failure}: {one_line(error)}")
            return False
        self.result.extend(line for _, line in steps if line)
        return True


def _columns(table: WatchedTable, facts: TableFacts) -> list[str] | None:
    """The publication's column list of a table: only with DEFAULT identity and excluded columns."""
    excluded = set(table.excluded)
    if table.replica_identity != "default" or not excluded:
        return None
    return [column for column in facts.columns if column not in excluded]


def _add(relation: Relation, columns: list[str] | None) -> sql.Composable:
    target = relation.identifier if columns is None else sql.SQL("{} ({})").format(
        relation.identifier, sql.SQL(", ").join(map(sql.Identifier, columns)))
    return sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(PUBLICATION), target)


def _drop(identifier: sql.Identifier) -> sql.Composable:
    return sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(sql.Identifier(PUBLICATION), identifier)


def sync_publication(using: str = "default") -> SyncResult:
    """Make the publication and replica identities match the settings; returns what changed, and
    in `.problems` what could not be done (one line each), having done everything else."""
    with connections[using].cursor() as cursor:
        run = _Sync(cursor, using)
        cursor.execute(_PUBLICATION, [PUBLICATION])
        exists = cursor.fetchone()
        tables, _ = watched_tables(using)  # entries that cannot be used: the trigger sync reports them
        facts = fetch_table_facts(cursor, tables)
        if conf.source() == "wal" and installed(cursor):
            _publish(run, tables, facts, exists)
        elif exists is not None:  # switching back, or pgnotify migrated to zero: what the WAL source set goes
            run.apply([(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(PUBLICATION)),
                        f"dropped publication {PUBLICATION}")], f"could not drop publication {PUBLICATION}")
            for name, table in tables.items():
                table_facts = facts[name]
                if table.targets and table_facts is not None and refusal(table, table_facts) is None:
                    run.apply(run.identities(table_facts.relations(), "default"),
                              f"could not set replica identity DEFAULT on {table_facts.relation.display}")
    for action in run.result:
        logger.debug("pgnotify: %s", action)
    return run.result


def _publish(run: _Sync, tables: dict[TableName, WatchedTable], facts: dict[TableName, TableFacts | None],
             exists: tuple | None) -> None:
    # Without the publication the WAL source has nothing to read: a failure here stops `migrate`
    # (pgnotify.schema.install), before the change triggers are removed.
    if exists is None:
        if not run.apply([(sql.SQL("CREATE PUBLICATION {} WITH (publish_via_partition_root = true)").format(
                sql.Identifier(PUBLICATION)), f"created publication {PUBLICATION}")],
                f"could not create publication {PUBLICATION}"):
            raise WalSetupError(run.result.problems.pop())
    elif not exists[0]:
        if not run.apply([(sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = true)").format(
                sql.Identifier(PUBLICATION)), f"publication {PUBLICATION} publishes partitions as their tables")],
                f"could not alter publication {PUBLICATION}"):
            raise WalSetupError(run.result.problems.pop())
    run.cursor.execute(_PUBLISHED, [PUBLICATION])
    published = {oid: ((schema, name), columns) for oid, schema, name, columns in run.cursor.fetchall()}
    wanted = set()
    for name, table in tables.items():
        table_facts = facts[name]
        refused = wal_refusal(table, table_facts)
        if refused:
            run.result.problems.append(f"could not watch {', '.join(map(repr, table.models))}: {refused[1]}")
            continue
        assert table_facts is not None  # else refused: "missing"
        relation = table_facts.relation
        wanted.add(relation.oid)
        columns = _columns(table, table_facts)
        steps: list[Step] = []
        if relation.oid not in published or published[relation.oid][1] != columns:
            if relation.oid in published:
                steps.append((_drop(relation.identifier), None))
            shown = f" without {', '.join(c for c in table_facts.columns if c not in columns)}" if columns else ""
            steps.append((_add(relation, columns), f"published {relation.display}{shown}"))
        relations = table_facts.relations()
        run.result.problems += table_facts.foreign_partition_problems()
        if table.replica_identity is not None:
            identity = run.identities(relations, table.replica_identity)
            # No moment with a column list and FULL identity: UPDATEs of the table would fail.
            steps = identity + steps if table.replica_identity == "default" else steps + identity
        run.apply(steps, f"could not publish {relation.display}")
    for oid in published.keys() - wanted:
        schema, name = published[oid][0]
        run.apply([(_drop(sql.Identifier(schema, name)), f"unpublished {schema}.{name}")],
                  f"could not unpublish {schema}.{name}")
