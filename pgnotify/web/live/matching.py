"""A Q, or a client's filter, evaluated in Python against an event's row (a dict by column name).

Supports AND, OR and NOT, and the lookups exact, in, lt, lte, gt, gte and isnull on the model's own
columns (a field's name or attname: `customer=user`, `customer_id=7`). Values on both sides go
through the field's `to_python`, so "99.90" and Decimal("99.9"), or an ISO text and a datetime,
compare as the database would. Anything else raises Unevaluable: such a stream must be declared
with "query": True, and then its rights are QueryRights, decided by the database.
"""

from typing import Any

from django.core.exceptions import FieldError
from django.db.models import Model, Q

LOOKUPS = ("exact", "in", "lt", "lte", "gt", "gte", "isnull")


class Unevaluable(ValueError):
    """A Q this module cannot evaluate in Python."""


class Term:
    """One lookup on one column: `column` is the attname the event's row uses."""

    __slots__ = ("column", "field", "lookup", "value")

    def __init__(self, model, name: str, value):
        field_name, _, lookup = name.partition("__")
        lookup = lookup or "exact"
        if lookup not in LOOKUPS:
            raise Unevaluable(f"lookup {name!r} (only {', '.join(LOOKUPS)} on the model's own columns)")
        field = column_field(model, field_name)
        if field is None:
            raise Unevaluable(f"{field_name!r} is not a column of {model._meta.label}")
        self.column, self.lookup, self.field = field.attname, lookup, field
        self.value: Any  # a bool (isnull), a list (in), else a value of the column
        if lookup == "isnull":
            self.value = bool(value)
        elif lookup == "in":
            if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
                raise Unevaluable(f"{name!r} needs a list of values")
            self.value = [self.convert(item) for item in value]
        else:
            self.value = self.convert(value)
        if lookup != "isnull" and (self.value is None or (lookup == "in" and None in self.value)):
            raise Unevaluable(f"{name!r} compares with null: use {field_name}__isnull")

    def convert(self, value):
        if isinstance(value, Model):
            value = value.pk
        if hasattr(value, "resolve_expression"):
            raise Unevaluable(f"{self.column}: an expression, not a value")
        if value is None:
            return None
        target = self.field.target_field if self.field.is_relation else self.field
        try:
            return target.to_python(value)
        except Exception as error:  # ValidationError, TypeError: a value the column cannot hold
            raise Unevaluable(f"{self.column}: {value!r} is not a valid value") from error

    def matches(self, row: dict) -> bool:
        raw = row.get(self.column)
        if self.lookup == "isnull":
            return (raw is None) == self.value
        if raw is None:
            return False
        try:
            value = self.convert(raw)
        except Unevaluable:
            return False
        if self.lookup == "exact":
            return value == self.value
        if self.lookup == "in":
            return value in self.value
        try:
            if self.lookup == "lt":
                return value < self.value
            if self.lookup == "lte":
                return value <= self.value
            if self.lookup == "gt":
                return value > self.value
            return value >= self.value
        except TypeError:
            return False


def column_field(model, name: str):
    """The concrete column field called `name` (its name or attname), or None."""
    for field in model._meta.concrete_fields:
        if name in (field.name, field.attname):
            return field
    if name == "pk":
        return model._meta.pk
    return None


class Matcher:
    """A compiled Q: `matches(row)`; `equalities` are the (column, value) terms every match has."""

    def __init__(self, model, q: Q):
        if not isinstance(q, Q):
            raise Unevaluable(f"expected a Q, got {type(q).__name__}")
        self.q = self.source = q
        self.model = model
        self.tree = _compile(model, q)
        self.columns = set(_columns(self.tree))

    def field(self, column: str):
        return column_field(self.model, column)

    def matches(self, row: dict) -> bool:
        return _evaluate(self.tree, row)

    def admitted_row(self, event: dict) -> dict | None:
        """The event's row when the rights hold for it, else None."""
        row = event.get("row") or {}
        return row if self.matches(row) else None

    def equalities(self) -> list[tuple[str, object]]:
        """Terms `column = value` ANDed at the top: any row that matches has these values."""
        connector, negated, children = self.tree
        if negated or (connector != Q.AND and len(children) > 1):
            return []
        return [(child.column, child.value) for child in children
                if isinstance(child, Term) and child.lookup == "exact"]


class QueryRights:
    """Rights that need the database (a stream declared "query": True): any Q the ORM takes,
    relations included. The router decides, with one query per event batch for all the
    subscriptions of the process, which events' rows they admit (`verdicts`)."""

    query = True
    columns: frozenset[str] = frozenset()  # the event's own columns do not tell

    def __init__(self, model, q: Q):
        if not isinstance(q, Q):
            raise Unevaluable(f"expected a Q, got {type(q).__name__}")
        try:  # a name the model does not have fails here, not on the first event
            inner = model._default_manager.filter(q).order_by().values("pk")
        except (FieldError, TypeError, ValueError) as error:
            raise Unevaluable(str(error)) from error
        self.source = q
        self.q = Q(pk__in=inner)  # the snapshot's: a relation's join never repeats a row
        self.model = model
        # event id -> the row as the membership query read it (None: not admitted), set by the
        # router before the event is applied. The row read is sent, not the event's: what leaves
        # is a state of the row the rights admitted.
        self.verdicts: dict = {}

    def admitted_row(self, event: dict) -> dict | None:
        return self.verdicts.pop(event.get("id"), None)

    def matches(self, row: dict) -> bool:
        raise Unevaluable("rights that need a query are decided per event batch")

    def equalities(self) -> list:
        return []


def _compile(model, q: Q) -> tuple:
    children: list[tuple | Term] = []
    for child in q.children:
        if isinstance(child, Q):
            children.append(_compile(model, child))
        elif isinstance(child, tuple) and len(child) == 2:
            children.append(Term(model, *child))
        else:
            raise Unevaluable(f"{child!r}: only lookups and Q objects")
    return q.connector, q.negated, children


def _evaluate(tree: tuple, row: dict) -> bool:
    connector, negated, children = tree
    if connector == Q.OR:
        result = any(_child(child, row) for child in children)
    else:
        result = all(_child(child, row) for child in children)
    return not result if negated else result


def _child(child, row: dict) -> bool:
    return child.matches(row) if isinstance(child, Term) else _evaluate(child, row)


def _columns(tree: tuple):
    for child in tree[2]:
        if isinstance(child, Term):
            yield child.column
        else:
            yield from _columns(child)
