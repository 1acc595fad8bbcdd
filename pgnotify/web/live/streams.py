"""Streams: PGNOTIFY["STREAMS"], the rows of a watched model each user may see, live.

    PGNOTIFY["STREAMS"] = {"my-orders": {
        "model": "shop.Order",
        "fields": ["id", "number", "status"],      # what may leave the server
        "filters": {"status": ["eq", "in"]},       # what a client may filter on, and how
        "rows": "myapp.streams.my_orders",         # callable(user) -> Q over the model's own columns
        "anonymous": False,                        # may anonymous users subscribe
        "query": False,                            # True: the rights need the database (relations)
    }}

Declarations are read on every access (override_settings works) and validated by the system
checks (docs/checks.md); a stream that fails them is refused to clients as unknown.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.db.models import Model, Q
from django.utils.module_loading import import_string

from ... import conf
from .matching import Matcher, QueryRights, Unevaluable, column_field

OPERATORS = {"eq": "exact", "in": "in", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte", "isnull": "isnull"}
MAX_FILTER_TERMS = 20
MAX_IN_VALUES = 100
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class Refused(ValueError):
    """What a client asked for cannot be served; the message goes back in an error frame."""


@dataclass(frozen=True)
class Stream:
    name: str
    model: type[Model]
    fields: tuple[str, ...]  # attnames, the primary key's first
    filters: dict  # declared field -> frozenset of Django lookups
    rows: Callable[..., Q | None]  # (user) -> the Q of the rows the user may see
    anonymous: bool
    query: bool = False  # the rights are decided by the database, one query per event batch

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    def rights(self, user) -> Matcher | QueryRights:
        """The rows `user` may see, compiled; Refused when the rights cannot be evaluated for them."""
        return self.compile(self.rows_q(user))

    def rows_q(self, user) -> Q:
        """The Q of the rows `user` may see, as the stream's callable returns it."""
        q = self.rows(user)
        return q if q is not None else Q(pk__in=[])

    def compile(self, q: Q) -> Matcher | QueryRights:
        """Rights of a Q from `rows_q`; Refused when they cannot be evaluated."""
        try:
            return QueryRights(self.model, q) if self.query else Matcher(self.model, q)
        except Unevaluable as error:
            raise Refused(f"stream {self.name}: rights cannot be evaluated: {error}") from error

    def filter(self, data) -> Matcher:
        """A client's filter ({"status": "paid"}, {"total__gte": 10}, ...) compiled; Refused when it
        names an undeclared field or operator, or is too large."""
        if data is None:
            return Matcher(self.model, Q())
        if not isinstance(data, dict):
            raise Refused("filter must be an object")
        if len(data) > MAX_FILTER_TERMS:
            raise Refused(f"filter has {len(data)} terms (at most {MAX_FILTER_TERMS})")
        terms = {}
        for key, value in data.items():
            name, _, lookup = str(key).partition("__")
            if lookup == "" and isinstance(value, list):
                lookup = "in"
            lookup = lookup or "exact"
            if name not in self.filters:
                raise Refused(f"{name!r} is not a filter of stream {self.name}")
            if lookup not in self.filters[name]:
                raise Refused(f"{key!r}: operator not allowed on {name!r} in stream {self.name}")
            if lookup == "in" and (not isinstance(value, list) or len(value) > MAX_IN_VALUES):
                raise Refused(f"{key!r} needs a list of at most {MAX_IN_VALUES} values")
            if lookup == "isnull" and not isinstance(value, bool):
                raise Refused(f"{key!r} needs true or false")
            if lookup != "in" and isinstance(value, (list, dict)):
                raise Refused(f"{key!r} needs a single value")
            terms[f"{name}__{lookup}"] = value
        try:
            return Matcher(self.model, Q(**terms))
        except Unevaluable as error:
            raise Refused(f"filter: {error}") from error

    def visible(self, row: dict) -> dict:
        """The row with only the declared fields."""
        return {field: row.get(field) for field in self.fields}


def declared() -> dict:
    value = conf.get("STREAMS")
    return value if isinstance(value, dict) else {}


def problems(name, declaration) -> list[tuple[str, str]]:
    """(check id, message) for everything wrong with one declaration."""
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS:
        return [("E060", f"stream name {name!r} must be lowercase letters, digits, '-' or '_'")]
    if not isinstance(declaration, dict):
        return [("E068", f"stream {name}: the declaration must be a dict")]
    unknown = set(declaration) - {"model", "fields", "filters", "rows", "anonymous", "query"}
    if unknown:
        return [("E069", f"stream {name}: unknown keys {sorted(unknown)}")]
    try:
        model = apps.get_model(declaration.get("model", ""))
    except (LookupError, ValueError, TypeError):
        return [("E061", f"stream {name}: model {declaration.get('model')!r} is not an installed model")]
    entry = next((entry for label, entry in conf.watch().items() if _label(label) == model._meta.label_lower), None)
    if entry is None:
        return [("E080", f"stream {name}: model {model._meta.label} is not in PGNOTIFY['WATCH']")]
    found = []
    excluded = set(entry.get("exclude", ()))
    fields = declaration.get("fields")
    if not isinstance(fields, (list, tuple)) or not fields:
        found.append(("E062", f"stream {name}: 'fields' must be a non-empty list of the model's columns"))
        fields = []
    for field_name in fields:
        field = column_field(model, field_name) if isinstance(field_name, str) else None
        if field is None:
            found.append(("E081", f"stream {name}: {field_name!r} is not a column of {model._meta.label}"))
        elif excluded & {field.name, field.attname, field.column}:
            found.append(("E082", f"stream {name}: field {field_name!r} is excluded in WATCH and never leaves"))
    filters = declaration.get("filters", {})
    if not isinstance(filters, dict):
        found.append(("E064", f"stream {name}: 'filters' must map declared fields to operators"))
        filters = {}
    for field_name, operators in filters.items():
        if field_name not in fields:
            found.append(("E083", f"stream {name}: filter {field_name!r} is not one of its fields"))
        bad = [op for op in (operators if isinstance(operators, (list, tuple)) else [operators])
               if op not in OPERATORS]
        if bad or not isinstance(operators, (list, tuple)):
            found.append(("E084", f"stream {name}: filter {field_name!r}: operators must be a list of "
                                  f"{', '.join(OPERATORS)}"))
    rows = declaration.get("rows")
    if isinstance(rows, str):
        try:
            rows = import_string(rows)
        except ImportError as error:
            return [*found, ("E063", f"stream {name}: 'rows' {declaration['rows']!r} cannot be imported: {error}")]
    if not callable(rows):
        found.append(("E085", f"stream {name}: 'rows' must be a callable(user) returning a Q (or its dotted path)"))
    if not isinstance(declaration.get("anonymous", False), bool):
        found.append(("E065", f"stream {name}: 'anonymous' must be True or False"))
    if not isinstance(declaration.get("query", False), bool):
        found.append(("E067", f"stream {name}: 'query' must be True or False"))
    if model._meta.pk.attname not in [column_field(model, f).attname for f in fields
                                      if isinstance(f, str) and column_field(model, f)]:
        found.append(("E066", f"stream {name}: 'fields' must include the primary key "
                              f"{model._meta.pk.attname!r} (a DELETE carries it)"))
    return found


def get(name) -> Stream:
    """The stream called `name`, or Refused."""
    declaration = declared().get(name) if isinstance(name, str) else None
    if declaration is None or problems(name, declaration):
        raise Refused(f"unknown stream {name!r}")
    model = apps.get_model(declaration["model"])
    rows = declaration["rows"]
    rows = import_string(rows) if isinstance(rows, str) else rows
    fields = [column_field(model, field).attname for field in declaration["fields"]]
    pk = model._meta.pk.attname
    fields = [pk, *[field for field in fields if field != pk]]
    filters = {field: frozenset(OPERATORS[op] for op in ops) for field, ops in declaration.get("filters", {}).items()}
    return Stream(name, model, tuple(fields), filters, rows, declaration.get("anonymous", False),
                  declaration.get("query", False))


def _label(label) -> str | None:
    try:
        return apps.get_model(label)._meta.label_lower
    except (LookupError, ValueError, TypeError):
        return None


def any_anonymous() -> bool:
    return any(isinstance(d, dict) and d.get("anonymous") is True for d in declared().values())


def view_sql(stream, q, columns: list[str]) -> tuple[str, list]:
    """The SQL and parameters of the rows of `stream` that `q` admits, as `columns`, unordered."""
    queryset = stream.model._default_manager.filter(q).values(*columns).order_by()
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)
