"""Attach, refresh and drop the triggers of watched tables.

Each trigger carries a hash of its definition in its comment (as django-pgtrigger does),
so `migrate` rewrites only the triggers whose definition changed.

The change trigger of a table is statement-level (pgnotify_notify_change_v5, migration 0007;
the newest of v4, v3 or v2 where only migrations up to 0006, 0005 or 0003 are applied): PostgreSQL allows
transition tables only on single-event triggers, so it is three triggers, `pgnotify_change`
(UPDATE, carrying the hash of all three) and its INSERT and DELETE parts. With only migration
0001 applied, the row-level v1 function is attached instead.

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
from .tables import Relation, TableFacts, fetch_table_facts
from .watched import WatchedTable, refusal, watched_tables

logger = logging.getLogger(__name__)

CACHE_TRIGGER = "pgnotify_cache"

CHANGE_PARTS = {"pgnotify_change_insert": "INSERT", "pgnotify_change_delete": "DELETE"}
# A part's comment names the trigger whose hash covers it (and never changes by itself).
PART_COMMENT = "pgnotify: part of pgnotify_change"

_CHANGE_V1 = sql.SQL(
    "CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION pgnotify_notify_change({arguments})"
)
_CHANGE_STATEMENT = {
    "UPDATE": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "INSERT": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows",
    "DELETE": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows",
}
_CHANGE_EXECUTE = " FOR EACH STATEMENT EXECUTE FUNCTION {function}({arguments})"
# Statement-level change functions, newest first: the newest installed one is attached.
STATEMENT_FUNCTIONS = ["pgnotify_notify_change_v5", "pgnotify_notify_change_v4", "pgnotify_notify_change_v3",
                       "pgnotify_notify_change_v2"]
_CACHE = sql.SQL(
    "CREATE OR REPLACE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION pgnotify_invalidate_cache({tags})"
)
# pgnotify's triggers in this database: those calling pgnotify functions of the schema where
# this project's pgnotify functions are (another project may share the database in its schema).
_INSTALLED = """
    SELECT c.oid, n.nspname, c.relname, to_regclass(quote_ident(c.relname)) IS NOT DISTINCT FROM c.oid::regclass,
           t.tgname, coalesce(obj_description(t.oid, 'pg_trigger'), '')
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgname IN (%s, %s) AND NOT t.tgisinternal
       AND p.pronamespace = (SELECT pronamespace FROM pg_proc WHERE oid = to_regproc('pgnotify_invalidate_cache'))
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


def _change_arguments(table: WatchedTable, facts: TableFacts, function: str | None) -> sql.Composed:
    """The change function's arguments: v5 and v4 take the key, the event's table, options and a
    target per WATCH entry (v5's options may add 'json': the table has a json column); the older
    functions the first entry's channel, label, key and exclusions.

    The key given is the event's `pk`; v5 also takes what old and new rows are paired on, the
    table's own key where it only holds the model's (partitioned on ts: (id, ts)); v4 pairs on the
    model's key (docs/models.md)."""
    if function in STATEMENT_FUNCTIONS[:2]:
        options = ["iso_intervals"] if facts.has_intervals else []
        values = [_array_literal(table.key), facts.relation.display, ""]
        if function == STATEMENT_FUNCTIONS[0]:
            options += ["json"] if facts.has_json else []
            values.append(_array_literal(facts.pairing_key(table.key) or table.key))
        values[2] = ",".join(options)
        for target in table.targets:
            values += [target.channel, target.label, _array_literal(target.excluded)]
    else:
        first = table.targets[0]
        values = [first.channel, first.label, table.key[0], _array_literal(first.excluded)]
    return sql.SQL(", ").join(sql.Literal(value) for value in values)


def _change_statements(relation: Relation, arguments: sql.Composed, function: str | None) -> sql.Composed:
    """The CREATE statements of a table's change trigger (and its parts), as one; `function` is
    the statement-level function to attach, None for the row-level v1."""
    if function is None:
        return _CHANGE_V1.format(name=sql.Identifier(CHANGE_TRIGGER), table=relation.identifier, arguments=arguments)
    names = {"UPDATE": CHANGE_TRIGGER, **{op: name for name, op in CHANGE_PARTS.items()}}
    return sql.SQL("; ").join(
        sql.SQL("CREATE TRIGGER {name} " + _CHANGE_STATEMENT[op] + _CHANGE_EXECUTE).format(
            name=sql.Identifier(names[op]), table=relation.identifier, function=sql.Identifier(function),
            arguments=arguments)
        for op in ("UPDATE", "INSERT", "DELETE"))


def _wanted(table: WatchedTable, facts: TableFacts, function: str | None) -> dict:
    """(relation oid, trigger name) -> (relation's name for the report, relation, CREATE statement)
    for one table and its partitions."""
    wanted = {}
    for relation, display in facts.relations():
        if table.targets:
            statement = _change_statements(relation, _change_arguments(table, facts, function), function)
            wanted[(relation.oid, CHANGE_TRIGGER)] = (display, relation, statement)
        if table.tags:
            statement = _CACHE.format(name=sql.Identifier(CACHE_TRIGGER), table=relation.identifier,
                                      tags=sql.SQL(", ").join(sql.Literal(tag) for tag in table.tags))
            wanted[(relation.oid, CACHE_TRIGGER)] = (display, relation, statement)
    return wanted


def _installed_functions(cursor) -> tuple[bool, str | None]:
    """Whether the row-level (v1) change function is installed, and the newest statement-level one."""
    names = ["pgnotify_notify_change", *STATEMENT_FUNCTIONS]
    cursor.execute("SELECT " + ", ".join("to_regprocedure(%s) IS NOT NULL" for _ in names), [f"{n}()" for n in names])
    v1, *statement_level = cursor.fetchone()
    return v1, next((name for name, there in zip(STATEMENT_FUNCTIONS, statement_level, strict=True) if there), None)


def installed(cursor) -> bool:
    """Whether pgnotify's migrations are applied here (a change function exists): not after `migrate pgnotify zero`."""
    return any(_installed_functions(cursor))


def _drop(relation: Relation, name: str) -> sql.Composed:
    """DROP statements of a trigger, with its parts for the change trigger."""
    names = [name, *CHANGE_PARTS] if name == CHANGE_TRIGGER else [name]
    return sql.SQL("; ").join(
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(n), relation.identifier) for n in names)


def sync_triggers(using: str = "default") -> SyncResult:
    """Make the database's pgnotify triggers match the settings; returns what changed, and in
    `.problems` what could not be done (one line each), having done everything else."""
    connection = connections[using]
    result = SyncResult()
    with connection.cursor() as cursor:
        v1, function = _installed_functions(cursor)
        if not (v1 or function):
            return result
        raw = cursor.connection
        tables, result.problems = watched_tables(using)
        if conf.source() == "wal":  # the publication (pgnotify.schema.publication) takes the triggers' place
            tables = {}
        facts = fetch_table_facts(cursor, tables)
        wanted = {}
        for name, table in tables.items():
            refused = refusal(table, facts[name])
            if refused:
                result.problems.append(f"could not watch {', '.join(map(repr, table.models))}: {refused[1]}")
                continue
            wanted.update(_wanted(table, facts[name], function))
            result.problems += facts[name].foreign_partition_problems()
        cursor.execute(_INSTALLED, [CHANGE_TRIGGER, CACHE_TRIGGER])
        installed = {(oid, trigger): (Relation(oid, schema, relname, "r", visible), comment)
                     for oid, schema, relname, visible, trigger, comment in cursor.fetchall()}

        for key, (display, relation, statement) in wanted.items():
            name = key[1]
            text = statement.as_string(raw)
            stamp = "pgnotify:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            if key in installed and installed[key][1] == stamp:
                continue
            comments = [(name, stamp)]
            if name == CHANGE_TRIGGER and function:
                comments += [(part, PART_COMMENT) for part in CHANGE_PARTS]
            try:
                with transaction.atomic(using=using):  # a savepoint: a failure here leaves the rest
                    # Dropped first: a row-level trigger cannot be replaced by a statement-level one.
                    cursor.execute(_drop(relation, name).as_string(raw))
                    cursor.execute(text)
                    for trigger, comment in comments:
                        cursor.execute(sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                            sql.Identifier(trigger), relation.identifier, sql.Literal(comment)).as_string(raw))
            except DatabaseError as error:
                result.problems.append(f"could not attach {name} on {display}: {one_line(error)}")
                continue
            result.append(f"{'refreshed' if key in installed else 'attached'} {name} on {display}")

        for key in installed.keys() - wanted.keys():
            relation, name = installed[key][0], key[1]
            try:
                with transaction.atomic(using=using):
                    cursor.execute(_drop(relation, name).as_string(raw))
            except DatabaseError as error:
                result.problems.append(f"could not drop {name} on {relation.display}: {one_line(error)}")
                continue
            result.append(f"dropped {name} on {relation.display}")
    for action in result:
        logger.debug("pgnotify: %s", action)
    return result
