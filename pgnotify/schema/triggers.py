"""Attach, refresh and drop the triggers of watched tables.

Each trigger carries a hash of its definition in its comment (as django-pgtrigger does),
so `migrate` rewrites only the triggers whose definition changed.

The change trigger of a table calls the table's own change function once per statement: the
change function (pgnotify_log_changes, pgnotify/schema/sql/log_changes.sql) with paths of the
table's own (pgnotify.schema.table_function), created with the trigger and dropped once no
trigger calls it. PostgreSQL allows transition tables only on single-event
triggers, so it is three triggers, `pgnotify_change` (UPDATE, carrying the hash of all three and
of the function) and its INSERT and DELETE parts.

Every shape of table gets its triggers from one place (docs/models.md): a table in another
schema by its schema; a model and its proxies through one trigger with a target each; each
partition of a partitioned table as well as the table (a statement on a partition does not fire
the partitioned table's statement-level triggers), its events naming the partitioned table.

One table that cannot have a trigger never stops the others: each table's statements run in a
savepoint, and what could not be done comes back as one line each in `problems`.
"""

import hashlib
import logging
import sys

from django.db import DatabaseError, connections, transaction
from psycopg import sql

from .. import conf
from ..exceptions import one_line
from ..listener.partitions import CHANGE_TRIGGER
from .sql import CACHE_FUNCTION, CHANGE_FUNCTION
from .table_function import OWN_COMMENT, create_function, function_name
from .tables import Relation, TableFacts, fetch_table_facts
from .watched import WatchedTable, refusal, watched_tables

logger = logging.getLogger(__name__)

CACHE_TRIGGER = "pgnotify_cache"

CHANGE_PARTS = {"pgnotify_change_insert": "INSERT", "pgnotify_change_delete": "DELETE"}
# A part's comment names the trigger whose hash covers it (and never changes by itself).
PART_COMMENT = "pgnotify: part of pgnotify_change"

_CHANGE_STATEMENT = {
    "UPDATE": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "INSERT": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows",
    "DELETE": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows",
}
_CHANGE_EXECUTE = " FOR EACH STATEMENT EXECUTE FUNCTION {function}({arguments})"
_CACHE = sql.SQL(
    "CREATE OR REPLACE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION " + CACHE_FUNCTION + "({tags})"
)
# pgnotify's triggers in this database: those calling pgnotify functions of the schema where
# this project's pgnotify functions are (another project may share the database in its schema).
_INSTALLED = """
    SELECT c.oid, n.nspname, c.relname, to_regclass(quote_ident(c.relname)) IS NOT DISTINCT FROM c.oid::regclass,
           t.tgname, coalesce(obj_description(t.oid, 'pg_trigger'), '')
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgname IN (%s, %s) AND NOT t.tgisinternal
       AND p.pronamespace = (SELECT pronamespace FROM pg_proc WHERE oid = to_regproc(%s))
"""


class SyncResult(list):
    """What sync_triggers changed, one line each; `problems`: what it could not do, one line each."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def report(self, verbosity: int = 1) -> None:
        """What `migrate` prints: the changes (at verbosity 1 and up), and the problems always."""
        if verbosity >= 1:
            for action in self:
                print(f"  pgnotify: {action}")
        for problem in self.problems:
            print(f"  pgnotify: {problem}", file=sys.stderr)


def _array_literal(values) -> str:
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _change_arguments(table: WatchedTable, facts: TableFacts) -> sql.Composed:
    """The change function's arguments (sql/log_changes.sql): the key, the event's table, options
    ('iso_intervals': the table has an interval column; 'json': a json one), what old and new rows
    are paired on (the table's own key where it only holds the model's: partitioned on ts, (id,
    ts); docs/models.md), then a target per WATCH entry."""
    options = [option for option, wanted in (("iso_intervals", facts.has_intervals), ("json", facts.has_json))
               if wanted]
    values = [_array_literal(table.key), facts.relation.display, ",".join(options),
              _array_literal(facts.pairing_key(table.key) or table.key)]
    for target in table.targets:
        values += [target.channel, target.label, _array_literal(target.excluded)]
    return sql.SQL(", ").join(sql.Literal(value) for value in values)


def _change_statements(relation: Relation, table: WatchedTable, facts: TableFacts) -> sql.Composed:
    """The CREATE statements of a table's own change function, its change trigger and the
    trigger's parts, as one."""
    names = {"UPDATE": CHANGE_TRIGGER, **{op: name for name, op in CHANGE_PARTS.items()}}
    function = sql.Identifier(function_name(table, facts))
    arguments = _change_arguments(table, facts)
    return sql.SQL("; ").join([create_function(table, facts), *(
        sql.SQL("CREATE TRIGGER {name} " + _CHANGE_STATEMENT[op] + _CHANGE_EXECUTE).format(
            name=sql.Identifier(names[op]), table=relation.identifier, function=function, arguments=arguments)
        for op in ("UPDATE", "INSERT", "DELETE"))])


def _wanted(table: WatchedTable, facts: TableFacts) -> dict:
    """(relation oid, trigger name) -> (relation's name for the report, relation, CREATE statement)
    for one table and its partitions."""
    wanted = {}
    for relation, display in facts.relations():
        if table.targets:
            statement = _change_statements(relation, table, facts)
            wanted[(relation.oid, CHANGE_TRIGGER)] = (display, relation, statement)
        if table.tags:
            statement = _CACHE.format(name=sql.Identifier(CACHE_TRIGGER), table=relation.identifier,
                                      tags=sql.SQL(", ").join(sql.Literal(tag) for tag in table.tags))
            wanted[(relation.oid, CACHE_TRIGGER)] = (display, relation, statement)
    return wanted


def installed(cursor) -> bool:
    """Whether pgnotify's migrations are applied here (its event log exists): not after `migrate
    pgnotify zero`. True too where the last ones are pending (`migrate` of another app)."""
    cursor.execute("SELECT to_regclass('pgnotify_event') IS NOT NULL")
    return cursor.fetchone()[0]


def _change_function_exists(cursor) -> bool:
    cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [CHANGE_FUNCTION + "()"])
    return cursor.fetchone()[0]


def _drop(relation: Relation, name: str) -> sql.Composed:
    """DROP statements of a trigger, with its parts for the change trigger."""
    names = [name, *CHANGE_PARTS] if name == CHANGE_TRIGGER else [name]
    return sql.SQL("; ").join(
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(n), relation.identifier) for n in names)


# The tables' own change functions (pgnotify.schema.table_function) that no trigger calls.
_UNUSED_FUNCTIONS = """
    SELECT p.oid::regprocedure::text FROM pg_proc p
     WHERE p.pronamespace = (SELECT pronamespace FROM pg_proc WHERE oid = to_regproc(%s))
       AND obj_description(p.oid, 'pg_proc') = %s
       AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid)
"""


def _drop_unused_functions(cursor, raw, using: str, result: SyncResult) -> None:
    cursor.execute(_UNUSED_FUNCTIONS, [CACHE_FUNCTION, OWN_COMMENT])
    for (function,) in cursor.fetchall():
        try:
            with transaction.atomic(using=using):
                cursor.execute(sql.SQL("DROP FUNCTION IF EXISTS {}").format(sql.SQL(function)).as_string(raw))
        except DatabaseError as error:
            result.problems.append(f"could not drop {function}: {one_line(error)}")
            continue
        logger.debug("pgnotify: dropped %s", function)


def sync_triggers(using: str = "default") -> SyncResult:
    """Make the database's pgnotify triggers match the settings; returns what changed, and in
    `.problems` what could not be done (one line each), having done everything else."""
    # With the WAL source the publication (pgnotify.schema.publication) takes the triggers' place.
    return _sync(using, serve=conf.source() != "wal", only_present=False)


def refresh_change_triggers(using: str = "default") -> SyncResult:
    """Rewrite the change triggers in place whose definition changed (dropping those of tables no
    longer watched), whatever the source, and attach none: what a migration that replaces the
    change function runs in its own transaction (pgnotify.schema.functions). The rest is left to
    the sync after `migrate`, in the order a switch of source needs (pgnotify.schema.install)."""
    return _sync(using, serve=True, only_present=True)


def _sync(using: str, serve: bool, only_present: bool) -> SyncResult:
    """serve: the triggers the settings want (else none); only_present: touch no table whose
    change trigger is not there yet, nor any cache trigger."""
    connection = connections[using]
    result = SyncResult()
    with connection.cursor() as cursor:
        # Without the function (pgnotify not migrated, or not yet to 0008) the triggers stay as
        # they are. A migration refreshes them right after creating it (or, writing its SQL,
        # before it exists).
        if not (only_present or _change_function_exists(cursor)):
            return result
        raw = cursor.connection
        tables, unwatched = watched_tables(using)
        if not serve:
            tables = {}
        facts = fetch_table_facts(cursor, tables)
        wanted = {}
        for name, table in tables.items():
            table_facts = facts[name]
            refused = refusal(table, table_facts)
            if refused:
                unwatched.append(f"could not watch {', '.join(map(repr, table.models))}: {refused[1]}")
                continue
            assert table_facts is not None  # else refused: "missing"
            wanted.update(_wanted(table, table_facts))
            unwatched += table_facts.foreign_partition_problems()
        if not only_present:  # the sync after `migrate` reports them
            result.problems += unwatched
        cursor.execute(_INSTALLED, [CHANGE_TRIGGER, CACHE_TRIGGER, CACHE_FUNCTION])
        present = {(oid, trigger): (Relation(oid, schema, relname, "r", visible), comment)
                   for oid, schema, relname, visible, trigger, comment in cursor.fetchall()}
        if only_present:
            present = {key: value for key, value in present.items() if key[1] == CHANGE_TRIGGER}
            wanted = {key: value for key, value in wanted.items() if key in present}

        for key, (display, relation, statement) in wanted.items():
            name = key[1]
            text = statement.as_string(raw)
            stamp = "pgnotify:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            if key in present and present[key][1] == stamp:
                continue
            comments = [(name, stamp)]
            if name == CHANGE_TRIGGER:
                comments += [(part, PART_COMMENT) for part in CHANGE_PARTS]
            try:
                with transaction.atomic(using=using):  # a savepoint: a failure here leaves the rest
                    # Dropped first: CREATE OR REPLACE cannot turn a row-level trigger (made by
                    # an older release) into a statement-level one.
                    cursor.execute(_drop(relation, name).as_string(raw))
                    cursor.execute(text)
                    for trigger, comment in comments:
                        cursor.execute(sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                            sql.Identifier(trigger), relation.identifier, sql.Literal(comment)).as_string(raw))
            except DatabaseError as error:
                result.problems.append(f"could not attach {name} on {display}: {one_line(error)}")
                continue
            result.append(f"{'refreshed' if key in present else 'attached'} {name} on {display}")

        for key in present.keys() - wanted.keys():
            relation, name = present[key][0], key[1]
            try:
                with transaction.atomic(using=using):
                    cursor.execute(_drop(relation, name).as_string(raw))
            except DatabaseError as error:
                result.problems.append(f"could not drop {name} on {relation.display}: {one_line(error)}")
                continue
            result.append(f"dropped {name} on {relation.display}")
        _drop_unused_functions(cursor, raw, using, result)
    for action in result:
        logger.debug("pgnotify: %s", action)
    return result
