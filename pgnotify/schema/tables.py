"""What the database says about the tables of watched models: where a table is (its schema), what
kind of relation it is, which columns make a row unique (and so pair its old and new rows), its
partitions, whether it has interval columns, and whether it is unlogged. One query answers for
every table; the system checks and the trigger sync share it."""

import json
from dataclasses import dataclass

from django.db.backends.utils import split_identifier
from psycopg import sql

from ..listener.keys import pairing_key, unique_keys_sql

# pg_class.relkind of the relations a statement-level trigger with transition tables can serve.
TABLE_KINDS = {"r": "table", "p": "partitioned table"}
OTHER_KINDS = {"v": "view", "m": "materialized view", "f": "foreign table", "S": "sequence",
               "c": "composite type", "i": "index", "I": "partitioned index", "t": "TOAST table"}


@dataclass(frozen=True)
class TableName:
    """A model's db_table: 'things', or 'other"."things' for a table in schema `other`."""

    schema: str  # '' when the search path finds the table
    name: str

    @classmethod
    def of(cls, model) -> "TableName":
        schema, name = split_identifier(model._meta.db_table)
        return cls(schema, name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class Relation:
    """A relation in the database (pg_class)."""

    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind
    # The bare name finds this relation by the search path: events name it without its schema.
    on_search_path: bool

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return self.name if self.on_search_path else f"{self.schema}.{self.name}"

    @property
    def kind_name(self) -> str:
        return TABLE_KINDS.get(self.kind) or OTHER_KINDS.get(self.kind, f"relation of kind {self.kind!r}")

    @property
    def holds_rows(self) -> bool:
        """A table or a partitioned table: what a trigger or a publication can serve."""
        return self.kind in TABLE_KINDS


@dataclass(frozen=True)
class TableFacts:
    relation: Relation
    columns: tuple[str, ...]  # in table order
    unique_keys: tuple[tuple[str, ...], ...]  # the primary key's columns (first) and each unique index's
    has_intervals: bool
    partitions: tuple[Relation, ...]  # every partition below it, sub-partitions included
    unlogged: bool = False  # an UNLOGGED table: the WAL has none of its changes
    has_json: bool = False  # a json column (or an array or domain of json): may hold what jsonb refuses
    # name:type oid:collation oid of each column, in table order: what a table's own change
    # function checks before comparing columns by value (pgnotify.schema.table_function)
    column_signature: tuple[str, ...] = ()
    # Columns whose values are equal exactly when their JSON is: of BY_VALUE_TYPES, and a deterministic collation.
    by_value: frozenset[str] = frozenset()

    def pairing_key(self, key) -> tuple[str, ...] | None:
        """The columns this table's old and new rows are paired on, for a model keyed on `key`
        (pgnotify.listener.keys); None: no unique key tells the model's rows apart."""
        return pairing_key(key, self.unique_keys)

    def relations(self) -> list[tuple[Relation, str]]:
        """(relation, its name for reports) of the table and of each partition below it that
        holds rows."""
        parent = self.relation
        return [(parent, parent.display)] + [(part, f"{part.display} (partition of {parent.display})")
                                             for part in self.partitions if part.holds_rows]

    def foreign_partitions(self) -> list[Relation]:
        """Partitions that hold no rows of their own (foreign tables): writes straight to them
        send no events."""
        return [part for part in self.partitions if not part.holds_rows]

    def foreign_partition_problems(self) -> list[str]:
        parent = self.relation.display
        return [f"could not watch {part.display} (partition of {parent}): it is a {part.kind_name}, writes straight "
                "to it send no events" for part in self.foreign_partitions()]


# Types whose values are equal exactly when their jsonb values are: jsonb compares numbers by value
# (1.0 = 1.00, 0 = -0, NaN and Infinity are strings), unlike interval ('1 day' = '24 hours' by
# value, not as jsonb); json has no equality. A table's own change function compares such columns
# by value, the others by their jsonb, as the shared body compares every column.
BY_VALUE_TYPES = ("bool", "int2", "int4", "int8", "numeric", "float4", "float8", "text", "varchar", "date",
                  "timestamp", "timestamptz", "uuid")

_FACTS = """
WITH wanted AS (
    SELECT w.schema, w.name,
           to_regclass(CASE WHEN w.schema = '' THEN quote_ident(w.name)
                            ELSE quote_ident(w.schema) || '.' || quote_ident(w.name) END) AS oid
      FROM unnest(%s::text[], %s::text[]) AS w(schema, name))
SELECT w.schema, w.name, c.oid, n.nspname, c.relname, c.relkind::text,
       to_regclass(quote_ident(c.relname)) IS NOT DISTINCT FROM c.oid::regclass,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       """ + unique_keys_sql("c.oid") + """,
       EXISTS (SELECT FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND 'interval'::regtype IN (t.oid, t.typelem, t.typbasetype)),
       EXISTS (SELECT FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND 'json'::regtype IN (t.oid, t.typelem, t.typbasetype)),
       (SELECT coalesce(json_agg(json_build_array(
                   pc.oid::bigint, pn.nspname, pc.relname, pc.relkind,
                   to_regclass(quote_ident(pc.relname)) IS NOT DISTINCT FROM pc.oid::regclass)
                 ORDER BY p.level, pc.relname), '[]')::text
          FROM pg_partition_tree(c.oid) p JOIN pg_class pc ON pc.oid = p.relid
          JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE c.relkind = 'p' AND p.relid <> c.oid),
       c.relpersistence = 'u',
       ARRAY(SELECT a.attname::text || ':' || a.atttypid::text || ':' || a.attcollation::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.atttypid IN (""" + ", ".join(f"{name!r}::regtype" for name in BY_VALUE_TYPES) + """)
                AND (a.attcollation = 0 OR coalesce((SELECT l.collisdeterministic FROM pg_collation l
                                                      WHERE l.oid = a.attcollation), false))
              ORDER BY a.attnum)
  FROM wanted w LEFT JOIN pg_class c ON c.oid = w.oid LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def fetch_table_facts(cursor, names) -> dict[TableName, TableFacts | None]:
    """Facts about each table (None: no relation of that name) through a DB-API cursor of
    Django's connection."""
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    cursor.execute(_FACTS, [[n.schema for n in names], [n.name for n in names]])
    facts: dict[TableName, TableFacts | None] = {}
    for (schema, name, oid, nspname, relname, kind, visible, columns, unique_keys, intervals, json_columns,
         partitions, unlogged, signature, by_value) in cursor.fetchall():
        if oid is None:
            facts[TableName(schema, name)] = None
            continue
        facts[TableName(schema, name)] = TableFacts(
            relation=Relation(oid, nspname, relname, kind, visible),
            columns=tuple(columns),
            unique_keys=tuple(tuple(key) for key in json.loads(unique_keys)),
            has_intervals=intervals,
            partitions=tuple(Relation(*row) for row in json.loads(partitions)),
            unlogged=unlogged,
            has_json=json_columns,
            column_signature=tuple(signature),
            by_value=frozenset(by_value),
        )
    return facts

