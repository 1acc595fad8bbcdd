"""Rights that need a query ("query": True streams): which rows of an event batch each distinct
rights Q admits, in one query for the whole batch and every subscription of the process."""

from django.db import connection
from django.db.models import F, IntegerField, Q, Value

from ...listener import exactjson
from .streams import view_sql


def admitted(stream, pks: list, sources: list[Q]) -> list[dict]:
    """For each Q of `sources`, the rows among `pks` it admits now, by primary key (the declared
    fields, rendered by to_jsonb as events are): one query (a UNION ALL of one part per Q, joined
    to the rows), whatever the number of subscribers."""
    found: list[dict] = [{} for _ in sources]
    if not pks or not sources:
        return found
    manager = stream.model._default_manager
    parts = [manager.filter(pk__in=pks).filter(q).order_by()
             .annotate(pgnotify_pk=F("pk"), pgnotify_rights=Value(number, output_field=IntegerField()))
             .values_list("pgnotify_pk", "pgnotify_rights") for number, q in enumerate(sources)]
    union = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    union_sql, union_params = union.query.sql_with_params()
    rows_sql, rows_params = view_sql(stream, Q(pk__in=pks), list(stream.fields))
    pk = connection.ops.quote_name(stream.fields[0])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT m.pgnotify_rights, to_jsonb(v)::text FROM ({union_sql}) m"
                       f" JOIN ({rows_sql}) v ON v.{pk} = m.pgnotify_pk", [*union_params, *rows_params])
        for number, text in cursor.fetchall():
            row = exactjson.loads(text)
            found[number][row[stream.fields[0]]] = row
    return found
