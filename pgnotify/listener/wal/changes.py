"""Decoded row changes made into the change events of docs/wire-format.md, equal to the NOTIFY source's.

A watched table has a target per WATCH entry on it (a model and its proxies): each change becomes
one event per target, each on its channel, with its model label and less its excluded columns, as
the change trigger makes them. Per relation and target a `Shape` is prepared once (which columns
are visible, in jsonb's key order, with their converters); each change then costs a dict per row.

An event's `id` is the LSN of the WAL record of its change: unique per change, exact in JavaScript
(below 2**53 for the first 8 PiB of WAL), the same when the change is decoded again after a
restart. A record that makes several events takes LSN, LSN + 1, ...: a multi-row INSERT record
(COPY) holds several rows at one LSN, and a table with several targets makes an event per target.
These stay inside the record, so no other change can have them: a record is at least 24 bytes,
and every row of a multi-row record more than 8, which holds for up to 8 targets per table.
The listener counts these ordinals afresh at each transaction's Begin, and the server sends a
transaction again only whole, from its Begin: so a change sent again gets the same ids.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..exactjson import jsonb_order
from .protocol import UNCHANGED, Change, Relation
from .values import AsText, Convert, as_text


@dataclass(frozen=True)
class WalTarget:
    """One WATCH entry of a table: its events go to `channel` as `model`, less `excluded` columns."""

    channel: str
    model: str
    excluded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class WalTable:
    """A watched or cache-invalidated table as the settings name it."""

    name: str
    schema: str = ""  # '': the table of that name the search path finds
    key: tuple[str, ...] = ("id",)  # the primary key's columns
    targets: tuple[WalTarget, ...] = ()  # none: only its cache tags are wanted
    tags: tuple[str, ...] = ()


class _Text(str):
    """A value the event carries as its JSON text (values.AsText), until the event is made."""


def _or_text(convert: Convert) -> Convert:
    def careful(text: str):
        try:
            return convert(text)
        except AsText:
            return _Text(text)

    return careful


@dataclass
class Shape:
    """A relation as one target renders it."""

    relation: Relation
    target: WalTarget
    table: str  # the event's `table`: the name, with its schema when the search path does not find it
    key: tuple[str, ...]
    converters: list[Convert]
    # (index, name) of the visible columns in jsonb's key order, and in table order.
    row_order: list[tuple[int, str]] = field(default_factory=list)
    visible: list[tuple[int, str]] = field(default_factory=list)
    pk: list[tuple[int, str]] = field(default_factory=list)
    full: bool = False  # REPLICA IDENTITY FULL: UPDATE and DELETE carry the whole old row
    # (index, name, converter or None for text as it is) in jsonb's key order: the hot path's plan.
    plan: list[tuple[int, str, Convert | None]] = field(default_factory=list)
    pk_name: str | None = None  # the key's column when it has one
    # (index, name) of the columns old and new rows are paired on (pgnotify.listener.keys): the
    # key's, or the table's own key holding them (a table partitioned on ts: id and ts).
    pair: list[tuple[int, str]] = field(default_factory=list)
    careful: "Shape | None" = None  # the same shape with values.AsText turned into text

    @classmethod
    def of(cls, relation: Relation, target: WalTarget, table: str, key: tuple[str, ...],
           converters: list[Convert], pair: tuple[str, ...] | None = None) -> "Shape":
        shape = cls(relation, target, table, key, converters, full=relation.replica_identity == "f")
        shape.visible = [(index, column.name) for index, column in enumerate(relation.columns)
                         if column.name not in target.excluded]
        shape.row_order = sorted(shape.visible, key=lambda item: jsonb_order(item[1]))
        shape.plan = [(index, name, None if converters[index] is as_text else converters[index])
                      for index, name in shape.row_order]
        names = {column.name: index for index, column in enumerate(relation.columns)}
        shape.pk = sorted(((names[name], name) for name in key if name in names),
                          key=lambda item: jsonb_order(item[1]))
        shape.pk_name = shape.pk[0][1] if len(shape.pk) == 1 else None
        shape.pair = [(names[name], name) for name in pair or key if name in names]
        return shape

    def whole_row(self, values: list) -> dict:
        """The row when every value is there (always for an INSERT): the listener's hot path."""
        return {name: text if convert is None or text is None else convert(text)
                for index, name, convert in self.plan for text in (values[index],)}

    def row(self, values: list, fallback: list | None) -> dict:
        """The row as to_jsonb gives it, minus excluded columns; an unchanged TOASTed value is
        taken from `fallback` (the old row), or left out when there is none."""
        if UNCHANGED not in values:
            return self.whole_row(values)
        converters = self.converters
        row = {}
        for index, name in self.row_order:
            text = values[index]
            if text is UNCHANGED:
                if fallback is None or (text := fallback[index]) is UNCHANGED:
                    continue
            row[name] = None if text is None else converters[index](text)
        return row

    def key_row(self, values: list) -> dict:
        """A DELETE's row without the whole old row: the replica identity's columns only. They are
        never NULL; pgoutput sends the other columns as NULL (all are flagged as the key when the
        table's identity is FULL and its partition's is not)."""
        converters, columns = self.converters, self.relation.columns
        return {name: converters[index](values[index])
                for index, name in self.row_order if columns[index].key and values[index] is not None}

    def pk_of(self, row: dict):
        """The key's value; for a composite key, an object of its columns (in jsonb's key order)."""
        if self.pk_name is not None:
            return row.get(self.pk_name)
        return {name: row.get(name) for _, name in self.pk}

    def _differs(self, index: int, new, old) -> bool:
        if new is UNCHANGED or new == old:
            return False
        if new is None or old is None or old is UNCHANGED:
            return True
        convert = self.converters[index]
        return convert(new) != convert(old)  # jsonb equality: numeric 1.0 equals 1.00

    def changed(self, new: list, old: list) -> list[str]:
        """The visible columns whose value changed, in table order.

        Like the trigger, which pairs old and new rows on the key: a row whose key (or the
        table's own key holding it) changed has every visible column changed."""
        # The texts compared first: most columns of an UPDATE are the same text, and need no call.
        differs = self._differs
        if any(new[index] != old[index] and differs(index, new[index], old[index]) for index, _ in self.pair):
            return [name for _, name in self.visible]
        return [name for index, name in self.visible
                if new[index] != old[index] and differs(index, new[index], old[index])]

    def event(self, change: Change, event_id: int, ts: str, txid: int) -> dict | None:
        """The change event, or None for an UPDATE that changed no visible column (only excluded
        ones, or none at all), as the trigger sends none. A json value the event cannot carry
        as JSON (values.AsText) is its JSON text, and the event names it in `as_text`."""
        try:
            return self._event(change, event_id, ts, txid)
        except AsText:
            return self._event_with_text(change, event_id, ts, txid)

    def _event_with_text(self, change: Change, event_id: int, ts: str, txid: int) -> dict | None:
        if self.careful is None:
            self.careful = Shape.of(self.relation, self.target, self.table, self.key,
                                    [_or_text(convert) for convert in self.converters])
        event = self.careful._event(change, event_id, ts, txid)
        if event is None:
            return None
        row = event["row"]
        as_text = [name for name, value in row.items() if type(value) is _Text]
        for name in as_text:
            row[name] = str(row[name])
        # In jsonb's key order, as the NOTIFY source's: ..., as_text, changed, channel.
        rest = {key: event.pop(key) for key in ("changed", "channel") if key in event}
        event["as_text"] = as_text
        event.update(rest)
        return event

    def _event(self, change: Change, event_id: int, ts: str, txid: int) -> dict | None:
        op, new, old = change.op, change.new, change.old
        changed = None
        if op == "DELETE":
            assert old is not None  # a DELETE carries the old row, or its key
            row = self.row(old, None) if self.full and not change.key_only else self.key_row(old)
        else:
            assert new is not None  # an INSERT or an UPDATE carries the new row
            if op == "INSERT":
                row = self.whole_row(new)
            elif self.full and old is not None and not change.key_only:
                changed = self.changed(new, old)
                if not changed:
                    return None
                row = self.row(new, old)
            else:
                row = self.row(new, None)
        target = self.target
        # jsonb's key order, as the NOTIFY source's payload has it.
        pk = row.get(self.pk_name) if self.pk_name is not None else self.pk_of(row)
        event = {"id": event_id, "op": op, "pk": pk, "ts": ts, "row": row, "txid": txid,
                 "model": target.model, "table": self.table}
        if changed is not None:
            event["changed"] = changed
        event["channel"] = target.channel
        return event


@dataclass(frozen=True)
class Watched:
    """A watched relation as the listener decodes it: its shapes (one per target) and cache tags."""

    name: str  # the relation's name, as the cache trigger names it
    shapes: tuple[Shape, ...]
    tags: tuple[str, ...]
    # An INSERT's events, one per shape, from its XLogData (wal.inserts), when it has shapes.
    insert_events: Callable[[bytes, int, str, int], list[dict]] | None = None


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def commit_ts(commit_time_us: int) -> str:
    """The commit time as jsonb renders a timestamptz in UTC (no trailing zeros in the fraction)."""
    text = (_PG_EPOCH + timedelta(microseconds=commit_time_us)).isoformat()
    if "." in text:
        head, tail = text.split(".")
        text = f"{head}.{tail[:6].rstrip('0')}{tail[6:]}"
    return text


def full_xid(xid: int, next_full_xid: int) -> int:
    """The 64-bit (xid8) form of a 32-bit xid within 2**31 of a recent next xid (xid8)."""
    distance = ((xid - next_full_xid + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return next_full_xid + distance
