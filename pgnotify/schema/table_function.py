"""A watched table's own change function: the change function (sql/log_changes.sql) with paths of
this table's own where most writes go, and the same events.

- A statement of one row (INSERT, UPDATE or DELETE) has the table's key, event table, options,
  targets and column order written in as constants: it reads no trigger argument and sets up no
  expression it does not use (PL/pgSQL sets up each expression anew in every transaction, which
  was most of what the shared function cost a single-row write: docs/benchmarks.md, writer cost).
- An UPDATE of several rows compares old and new rows column by column, by value where that says
  what their JSON says (tables.BY_VALUE_TYPES), and renders each new row once, in its event.
- Both give an event's keys, and a several rows' event's row, in jsonb's key order: jsonb sorts an
  object's keys, which costs next to nothing when they come sorted (docs/benchmarks.md).

Each path first checks that the table is as `migrate` found it, else the shared body runs, reading
the trigger's arguments as before. A function's name holds a hash of what it is made of, so a
table whose settings or columns change gets a new function and its triggers move to it in one
step; `sync_triggers` drops the functions no trigger calls any more. Each carries the comment
OWN_COMMENT, by which pgnotify knows its own.
"""

import functools
import hashlib
import re
import textwrap

from psycopg import sql

from ..listener.exactjson import jsonb_order
from .sql import CHANGE_FUNCTION, OWN_COMMENT, load_sql
from .tables import TableFacts
from .watched import WatchedTable

OWN_PREFIX = "pgnotify_change_"
# Where the table's own paths go in the shared body: its one-row path after the rows are counted,
# its UPDATE of several rows in place of the shared statement (each target's, in the targets' loop).
_MARKER = "    -- A table's own path (pgnotify/schema/table_function.py).\n"
_SEVERAL_BEGIN = "            -- A table's own statement of several rows (pgnotify/schema/table_function.py).\n"
_SEVERAL_END = "            -- The end of a table's own statement of several rows.\n"

_ONE_ROW = """    IF statement_rows = 1 AND TG_OP <> 'UPDATE' THEN
{intervals_on}        IF TG_OP = 'INSERT' THEN
            SELECT {render} INTO one_row FROM new_rows r;
        ELSE
            SELECT {render} INTO one_row FROM old_rows r;
        END IF;
{intervals_off}        xact := pg_current_xact_id();
{timestamp}{events}        RETURN NULL;
    END IF;
"""
# An UPDATE's changed columns are compared by name, in the table's order as `migrate` found it: a
# row with a column it did not know (added since) takes the shared body, which reads the order.
_ONE_UPDATE = """    IF statement_rows = 1 THEN  -- an UPDATE
{intervals_on}        SELECT {render_new}, {render_old} INTO one_row, one_old_row FROM new_rows n, old_rows o;
{intervals_off}        IF one_row - {known} = '{{}}' THEN
            xact := pg_current_xact_id();
            -- A row whose key (or the table's key holding it) changed is not paired: every
            -- visible column counts as changed.
            row_paired := {paired};
{timestamp}{events}            RETURN NULL;
        END IF;
    END IF;
"""
_CHANGED = """            row_changed := array_remove(ARRAY[
                {columns}], NULL);
            IF row_changed <> '{{}}' THEN  -- else nothing the subscribers may see changed
{event}            END IF;
"""
# An UPDATE of several rows compares old and new rows column by column, by value where that says
# the same as their JSON, and renders each new row once, in its event (the shared body renders both
# rows and compares their JSON). It needs the columns as `migrate` found them, names and types:
# checked once per statement, else the shared statement runs.
_SEVERAL_CHECK = """            IF own_columns IS NULL THEN
                own_columns := coalesce((
                    SELECT array_agg(a.attname::text || ':' || a.atttypid::text || ':' || a.attcollation::text
                                     ORDER BY a.attnum)
                      FROM pg_attribute a
                     WHERE a.attrelid = coalesce(pg_partition_root(TG_RELID), TG_RELID::regclass)
                       AND a.attnum > 0 AND NOT a.attisdropped) = {signature}, false);
            END IF;
"""
_SEVERAL = """            {branch} own_columns AND target = {target} THEN
            -- OFFSET 0: each pair's changed columns are compared once, and the pairs stream into
            -- the INSERT (MATERIALIZED stored every new row first).
            -- The event's keys, and its row's (the visible columns), come in jsonb's order (by
            -- length, then bytes): to_jsonb sorts an object's keys, and finds these sorted.
            WITH pairs AS (
                    SELECT {pk} AS pk, v AS new_row, array_remove(ARRAY[
                               {columns}], NULL) AS changed
                      FROM new_rows n LEFT JOIN old_rows o ON {join},
                           LATERAL (SELECT {visible}) v
                    OFFSET 0),
                 logged AS (
                    INSERT INTO pgnotify_event (id, channel, txid, payload)
                    SELECT e.id, event_channel, xact, to_jsonb(m)
                      FROM (SELECT nextval('pgnotify_event_id_seq') AS id, p.pk, p.new_row, p.changed
                              FROM pairs p
                             WHERE p.changed <> '{{}}') e,  -- else nothing the subscribers may see changed
                           LATERAL (SELECT e.id AS id, TG_OP AS op, e.pk AS pk, ts AS ts, e.new_row AS "row",
                                           txid AS txid, label AS model, event_table AS "table",
                                           e.changed AS changed, event_channel AS channel) m
                    -- The payloads are read back only to be notified one by one (at most 32 rows).
                    RETURNING id, CASE WHEN each_event THEN payload END AS payload)
{notify}"""
# The shared statement's end, which the table's own takes as it is: the events notified (a
# statement of at most 32 rows) and counted.
_NOTIFY_START = "            SELECT min(id), max(id), count(*), count(pg_notify("
_INTERVALS_ON = """        saved_intervalstyle := current_setting('intervalstyle');
        PERFORM set_config('intervalstyle', 'iso_8601', true);
"""
_INTERVALS_OFF = "        PERFORM set_config('intervalstyle', saved_intervalstyle, true);\n"
_EVENT = """        event_id := nextval('pgnotify_event_id_seq');
        -- The keys in jsonb's order: its sort finds them sorted.
        event_payload := jsonb_build_object(
            'id', event_id, 'op', TG_OP, 'pk', {pk}, 'ts', {ts}, 'row', {row},
            'txid', xact::text::bigint, 'model', {label}, 'table', {table}{changed},
            'channel', {channel}){as_text};
        event_text := event_payload::text;
        IF octet_length(event_text) >= 8000 THEN
            event_text := ((event_payload - 'row') || '{{"truncated": true}}'::jsonb)::text;
        END IF;
        INSERT INTO pgnotify_event (id, channel, txid, payload)
        SELECT event_id, {channel}, xact, event_payload FROM pg_notify({channel}, event_text);
"""
# A row with a json column is rendered as the shared body renders it (pgnotify_jsonb_row).
_RENDER = "to_jsonb({row})"
_RENDER_JSON = ("CASE WHEN strpos({row}::text, '\\u') > 0 THEN pgnotify_jsonb_row({row}, TG_RELID::regclass) "
                "ELSE to_jsonb({row}) END")


@functools.cache
def _shared_function() -> str:
    """The CREATE statement of the shared change function, as in sql/log_changes.sql."""
    text = load_sql("log_changes.sql")
    start = text.index(f"CREATE OR REPLACE FUNCTION {CHANGE_FUNCTION}()")
    end = text.index("$$;", start) + len("$$;")
    return text[start:end]


def _text_array(values) -> sql.Composable:
    return sql.SQL("{}::text[]").format(sql.Literal(list(values)))


def _render(facts: TableFacts, row: str) -> sql.SQL:
    return sql.SQL((_RENDER_JSON if facts.has_json else _RENDER).replace("{row}", row))


def _intervals(facts: TableFacts) -> dict:
    return {"intervals_on": sql.SQL(_INTERVALS_ON if facts.has_intervals else ""),
            "intervals_off": sql.SQL(_INTERVALS_OFF if facts.has_intervals else "")}


def _events(table: WatchedTable, facts: TableFacts, update: bool) -> dict:
    """Each target's event, in WATCH order, and the statement's one timestamp where several share it."""
    if len(table.key) == 1:
        pk = sql.SQL("one_row -> {}").format(sql.Literal(table.key[0]))
    else:
        pk = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
            sql.SQL("{}, one_row -> {}").format(sql.Literal(column), sql.Literal(column)) for column in table.key))
    single = len(table.targets) == 1
    events = []
    for target in table.targets:
        # The json path's row may carry the list of columns sent as text under the key ''.
        hidden = [*target.excluded, *([""] if facts.has_json else [])]
        row = sql.SQL("one_row - {}").format(_text_array(hidden)) if hidden else sql.SQL("one_row")
        as_text = sql.SQL(" || CASE WHEN one_row ? '' THEN jsonb_build_object('as_text', one_row -> '') "
                          "ELSE '{}'::jsonb END") if facts.has_json else sql.SQL("")
        event = sql.SQL(textwrap.indent(_EVENT, "        " if update else "")).format(
            channel=sql.Literal(target.channel), table=sql.Literal(facts.relation.display),
            label=sql.Literal(target.label),
            pk=pk, row=row, as_text=as_text, ts=sql.SQL("clock_timestamp()" if single else "ts"),
            changed=sql.SQL(", 'changed', to_jsonb(row_changed)" if update else ""))
        if update:
            visible = [column for column in facts.columns if column not in target.excluded]
            columns = sql.SQL(",\n" + " " * 16).join(
                sql.SQL("CASE WHEN row_paired IS NOT TRUE OR one_row -> {0} IS DISTINCT FROM one_old_row -> {0} "
                        "THEN {0} END").format(sql.Literal(column)) for column in visible)
            event = sql.SQL(_CHANGED).format(event=event, columns=columns if visible else sql.SQL("NULL::text"))
        events.append(event)
    indent = "    " if update else ""
    return {"events": sql.Composed(events),
            "timestamp": sql.SQL("" if single else indent + "        ts := to_jsonb(clock_timestamp());\n")}


def _one_row_path(table: WatchedTable, facts: TableFacts) -> sql.Composed:
    """The statements of the table's own path for a statement of one row."""
    pairing = facts.pairing_key(table.key) or table.key
    inserted_or_deleted = sql.SQL(_ONE_ROW).format(
        render=_render(facts, "r"), **_intervals(facts), **_events(table, facts, update=False))
    updated = sql.SQL(_ONE_UPDATE).format(
        render_new=_render(facts, "n"), render_old=_render(facts, "o"), **_intervals(facts),
        known=_text_array([*facts.columns, *([""] if facts.has_json else [])]),
        paired=sql.SQL(" AND ").join(sql.SQL("one_row -> {0} = one_old_row -> {0}").format(sql.Literal(column))
                                     for column in pairing),
        **_events(table, facts, update=True))
    return sql.Composed([inserted_or_deleted, updated])


def _several_rows(table: WatchedTable, facts: TableFacts, shared: str) -> tuple[sql.Composable, sql.Composable]:
    """What takes the place of the shared UPDATE statement of several rows (`shared`): (before, after) it.
    Only for a table whose rows are paired on its model's key, compared by value, and without a
    json column (its rows take pgnotify_jsonb_row): else the shared statement alone."""
    key = table.key
    if facts.has_json or (facts.pairing_key(key) or key) != key or not set(key) <= facts.by_value:
        return sql.SQL(""), sql.SQL("")
    first = sql.Identifier(key[0])
    join = sql.SQL(" AND ").join(sql.SQL("o.{0} = n.{0}").format(sql.Identifier(column)) for column in key)
    if len(key) == 1:
        pk = sql.SQL("n.{}").format(first)
    else:
        pk = sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
            sql.SQL("{}, n.{}").format(sql.Literal(column), sql.Identifier(column)) for column in key))
    branches = [sql.SQL(_SEVERAL_CHECK).format(signature=_text_array(facts.column_signature))]
    for number, target in enumerate(table.targets):
        visible = [column for column in facts.columns if column not in target.excluded]
        # A row whose key changed finds no old row (o.key IS NULL): every visible column changed.
        compare = {True: "n.{column} IS DISTINCT FROM o.{column}",
                   False: "to_jsonb(n.{column}) IS DISTINCT FROM to_jsonb(o.{column})"}
        columns = sql.SQL(",\n" + " " * 31).join(
            sql.SQL("CASE WHEN o.{first} IS NULL OR " + compare[column in facts.by_value] + " THEN {name} END").format(
                first=first, column=sql.Identifier(column), name=sql.Literal(column)) for column in visible)
        in_jsonb_order = sql.SQL(", ").join(sql.SQL("n.{0} AS {0}").format(sql.Identifier(column))
                                            for column in sorted(visible, key=jsonb_order))
        branches.append(sql.SQL(_SEVERAL).format(
            branch=sql.SQL("IF" if number == 0 else "ELSIF"), target=sql.Literal(4 + 3 * (number + 1)),
            columns=columns if visible else sql.SQL("NULL::text"), join=join, pk=pk, visible=in_jsonb_order,
            notify=sql.SQL(shared[shared.index(_NOTIFY_START):])))
    return sql.Composed([*branches, sql.SQL("            ELSE\n")]), sql.SQL("            END IF;\n")


def function_name(table: WatchedTable, facts: TableFacts) -> str:
    """The table's own function's name: its table's name (cut to fit PostgreSQL's 63 bytes) and a
    hash of what the function is made of."""
    made_of = repr((facts.relation.schema, facts.relation.name, facts.relation.display, table.key,
                    facts.has_intervals, facts.has_json,
                    [(t.channel, t.label, t.excluded) for t in table.targets], _shared_function(),
                    facts.columns, facts.pairing_key(table.key), facts.column_signature, sorted(facts.by_value),
                    _ONE_ROW, _ONE_UPDATE, _CHANGED, _EVENT, _INTERVALS_ON, _RENDER_JSON, _SEVERAL_CHECK, _SEVERAL))
    digest = hashlib.sha256(made_of.encode()).hexdigest()[:12]
    readable = re.sub(r"[^a-z0-9_]", "_", facts.relation.name.lower())[:30]
    return f"{OWN_PREFIX}{readable}_{digest}"


def _quote_tag(table: WatchedTable, facts: TableFacts) -> str:
    """A dollar quote for the body that none of the names written into it holds."""
    names = [facts.relation.display, *facts.columns, *(n for t in table.targets for n in (t.channel, t.label))]
    tag, number = "$pgnotify$", 0
    while any(tag in name for name in names):
        number += 1
        tag = f"$pgnotify{number}$"
    return tag


def create_function(table: WatchedTable, facts: TableFacts) -> sql.Composed:
    """CREATE OR REPLACE FUNCTION of the table's own change function, and its comment."""
    quote = _quote_tag(table, facts)
    head, tail = _shared_function().split(_MARKER)
    before_name, after_name = head.replace("AS $$", "AS " + quote).split(f"{CHANGE_FUNCTION}()")
    before_several, rest = tail.split(_SEVERAL_BEGIN)
    shared_several, after_several = rest.split(_SEVERAL_END)
    own_before, own_after = _several_rows(table, facts, shared_several)
    name = sql.Identifier(function_name(table, facts))
    return sql.Composed([
        sql.SQL(before_name), name, sql.SQL("()" + after_name), _one_row_path(table, facts),
        sql.SQL(before_several), own_before, sql.SQL(shared_several), own_after,
        sql.SQL(after_several[:-len("$$;")] + quote),
        sql.SQL("; COMMENT ON FUNCTION {}() IS {}").format(name, sql.Literal(OWN_COMMENT)),
    ])
