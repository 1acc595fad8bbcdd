"""The watched tables as the settings describe them: WATCH and CACHE_INVALIDATE entries grouped by
table (a model and its proxies share one), with what their triggers need, and why a table cannot
have them. The system checks and the trigger sync both read them from here."""

from dataclasses import dataclass, field

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import router

from .. import conf
from ..exceptions import one_line
from .tables import TableFacts, TableName


@dataclass(frozen=True)
class Target:
    """One WATCH entry of a table: its events go to `channel` as model `label`."""

    channel: str
    label: str  # the model's label_lower, the event's `model`
    excluded: tuple[str, ...]  # column names
    replica_identity: str = "full"  # what the WAL source needs of the table for this entry


@dataclass
class WatchedTable:
    name: TableName
    key: tuple[str, ...]  # the primary key's columns
    models: list[str] = field(default_factory=list)  # labels of the models on this table, as in settings
    targets: list[Target] = field(default_factory=list)  # WATCH entries
    tags: list[str] = field(default_factory=list)  # CACHE_INVALIDATE tags

    @property
    def replica_identity(self) -> str | None:
        """The replica identity the WAL source needs: FULL when any entry asks for it (the
        default), DEFAULT when all ask for less; None for a table only cache-invalidated."""
        if not self.targets:
            return None
        return "full" if any(t.replica_identity == "full" for t in self.targets) else "default"

    @property
    def excluded(self) -> tuple[str, ...]:
        """The columns no entry shows: what the WAL source's publication may leave out."""
        return tuple(c for c in self.targets[0].excluded if all(c in t.excluded for t in self.targets)) \
            if self.targets else ()


def key_columns(model) -> tuple[str, ...]:
    """The primary key's columns: one, or those of a CompositePrimaryKey."""
    return tuple(field.column for field in model._meta.pk_fields)


def excluded_columns(model, options) -> tuple[str, ...]:
    return tuple(model._meta.get_field(name).column for name in options.get("exclude", []))


def model_or_none(label):
    """The installed model named `label`, or None."""
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def database_of(model) -> str:
    """The alias of the database a model's changes happen in: where DATABASE_ROUTERS write it
    ('default' without a router). Its triggers go there, and its listener reads there."""
    return router.db_for_write(model)


def watched_labels() -> list[str]:
    """The labels of the WATCH (settings and apps) and CACHE_INVALIDATE entries, once each."""
    return list(dict.fromkeys([*conf.watch(), *conf.get("CACHE_INVALIDATE")]))


def served_databases() -> list[str]:
    """'default' and every alias the routers send a watched model to: each needs a listener
    (`listen_notify --database ALIAS`)."""
    models = [model for model in map(model_or_none, watched_labels()) if model is not None]
    return list(dict.fromkeys(["default", *map(database_of, models)]))


def watched_tables(database: str = "default") -> tuple[dict[TableName, WatchedTable], list[str]]:
    """Every table of `database` with a WATCH or CACHE_INVALIDATE entry (models the routers write
    elsewhere belong to that database's listener), and a line for each entry that cannot be used
    (the system checks say why in detail)."""
    tables: dict[TableName, WatchedTable] = {}
    problems = []

    def table_of(label):
        model = model_or_none(label)
        if model is None:
            problems.append(f"could not watch {label!r}: no such model")
            return None, None
        if database_of(model) != database:
            return None, None
        name = TableName.of(model)
        table = tables.setdefault(name, WatchedTable(name, key_columns(model)))
        if key_columns(model) != table.key:
            problems.append(f"could not watch {label!r}: its primary key ({', '.join(key_columns(model))}) is not "
                            f"that of {table.models[0]!r} on the same table ({', '.join(table.key)})")
            return None, None
        if label not in table.models:
            table.models.append(label)
        return model, table

    for label, options in conf.watch().items():
        model, table = table_of(label)
        if model is None:
            continue
        try:
            target = Target(options["channel"], model._meta.label_lower, excluded_columns(model, options),
                            options.get("replica_identity", "full"))
        except (TypeError, KeyError, AttributeError, FieldDoesNotExist) as error:
            # A malformed entry (the system checks say what is wrong): the others go on.
            problems.append(f"could not watch {label!r}: {one_line(error)}")
            continue
        if target not in table.targets:
            table.targets.append(target)
    for label, tags in conf.get("CACHE_INVALIDATE").items():
        model, table = table_of(label)
        if model is not None:
            table.tags.extend(tag for tag in tags if tag not in table.tags)
    return tables, problems


def refusal(table: WatchedTable, facts: TableFacts | None) -> tuple[str, str] | None:
    """Why the triggers of this table cannot be attached, as (reason, one line), or None. Reasons:
    "missing" (no such relation), "kind" (not a table), "key" (rows cannot be told apart)."""
    if facts is None:
        return "missing", f"table {table.name} does not exist (yet): migrate the app that creates it"
    relation = facts.relation
    if not relation.holds_rows:
        return "kind", f"{relation.display} is a {relation.kind_name}: no trigger can report its changes"
    if table.targets:
        missing = [column for column in table.key if column not in facts.columns]
        if missing:
            return "key", f"{relation.display} has no column {missing[0]!r} (the model's primary key)"
        if facts.pairing_key(table.key) is None:
            return "key", (f"{relation.display} has no primary key or unique index on ({', '.join(table.key)}): "
                           "old and new rows cannot be paired")
    return None


def wal_refusal(table: WatchedTable, facts: TableFacts | None) -> tuple[str, str] | None:
    """Why the WAL source cannot serve this table: what refuses a trigger, and reason "unlogged"
    (the WAL holds no change of an unlogged table; its triggers would work)."""
    refused = refusal(table, facts)
    if refused is None and facts is not None and facts.unlogged:
        return "unlogged", f"{facts.relation.display} is an unlogged table: the WAL holds none of its changes"
    return refused
