"""Decoded row changes made into the change events of SPEC §4, equal to the NOTIFY source's.

Per relation a `Shape` is prepared once (which columns are visible, in jsonb's key order, with
their converters); each change then costs a dict per row. An event's `id` is the LSN of the WAL
record of its change: unique per change, exact in JavaScript (below 2**53 for the first 8 PiB of
WAL), the same when the change is decoded again after a restart. A multi-row INSERT record (COPY)
holds several rows at one LSN: its rows take LSN, LSN + 1, ..., which stay inside the record
(every row takes more than one byte of it), so no other change can have them.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .protocol import UNCHANGED, Change, Relation
from .values import Convert, as_text


@dataclass(frozen=True)
class WalTable:
    """What the listener needs of a watched or cache-invalidated table (from the settings)."""

    table: str
    channel: str | None = None  # None: only its cache tags are wanted
    model: str | None = None
    pk: tuple[str, ...] = ("id",)
    excluded: frozenset[str] = frozenset()
    tags: tuple[str, ...] = ()
    schema: str | None = None  # None: the table of that name in any schema


def _jsonb_order(name: str) -> tuple[int, bytes]:
    encoded = name.encode()
    return len(encoded), encoded


@dataclass
class Shape:
    """A relation as this listener renders it."""

    relation: Relation
    table: WalTable
    converters: list[Convert]
    # (index, name) of the visible columns in jsonb's key order, and in table order.
    row_order: list[tuple[int, str]] = field(default_factory=list)
    visible: list[tuple[int, str]] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)
    pk: list[tuple[int, str]] = field(default_factory=list)
    full: bool = False  # REPLICA IDENTITY FULL: UPDATE and DELETE carry the whole old row
    # (index, name, converter or None for text as it is) in jsonb's key order: the hot path's plan.
    plan: list[tuple[int, str, Convert | None]] = field(default_factory=list)

    @classmethod
    def of(cls, relation: Relation, table: WalTable, converters: list[Convert]) -> "Shape":
        shape = cls(relation, table, converters, full=relation.replica_identity == "f")
        for index, column in enumerate(relation.columns):
            if column.name in table.excluded:
                shape.excluded.append(index)
            else:
                shape.visible.append((index, column.name))
        shape.row_order = sorted(shape.visible, key=lambda item: _jsonb_order(item[1]))
        shape.plan = [(index, name, None if converters[index] is as_text else converters[index])
                      for index, name in shape.row_order]
        names = {column.name: index for index, column in enumerate(relation.columns)}
        shape.pk = sorted(((names[name], name) for name in table.pk if name in names),
                          key=lambda item: _jsonb_order(item[1]))
        return shape

    def row(self, values: list, fallback: list | None) -> dict:
        """The row as to_jsonb gives it, minus excluded columns; an unchanged TOASTed value is
        taken from `fallback` (the old row), or left out when there is none."""
        if UNCHANGED not in values:  # every value is there (always for an INSERT): the hot path
            return {name: text if convert is None or text is None else convert(text)
                    for index, name, convert in self.plan for text in (values[index],)}
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
        """A DELETE's row without REPLICA IDENTITY FULL: the key columns only."""
        converters = self.converters
        return {name: None if values[index] is None else converters[index](values[index])
                for index, name in self.row_order if self.relation.columns[index].key}

    def pk_of(self, row: dict):
        if len(self.pk) == 1:
            return row.get(self.pk[0][1])
        return {name: row.get(name) for _, name in self.pk}

    def _differs(self, index: int, new, old) -> bool:
        if new is UNCHANGED or new == old:
            return False
        if new is None or old is None or old is UNCHANGED:
            return True
        convert = self.converters[index]
        return convert(new) != convert(old)  # jsonb equality: numeric 1.0 equals 1.00

    def changed(self, new: list, old: list) -> tuple[list[str], bool]:
        """(visible columns whose value changed, in table order; whether any column changed).

        Like the trigger, which pairs old and new rows by primary key: a row whose key changed
        has every visible column changed."""
        if any(self._differs(index, new[index], old[index]) for index, _ in self.pk):
            return [name for _, name in self.visible], True
        changed = [name for index, name in self.visible if self._differs(index, new[index], old[index])]
        touched = bool(changed) or any(self._differs(index, new[index], old[index]) for index in self.excluded)
        return changed, touched

    def event(self, change: Change, event_id: int, ts: str, txid: int) -> dict | None:
        """The change event, or None when an UPDATE changed only excluded columns."""
        table = self.table
        op = change.op
        changed = None
        if op == "DELETE":
            row = self.row(change.old, None) if self.full else self.key_row(change.old)
        elif op == "UPDATE" and self.full and change.old is not None:
            changed, touched = self.changed(change.new, change.old)
            if not changed and touched:
                return None
            row = self.row(change.new, change.old)
        else:
            row = self.row(change.new, None)
        # jsonb's key order, as the NOTIFY source's payload has it.
        event = {"id": event_id, "op": op, "pk": self.pk_of(row), "ts": ts, "row": row, "txid": txid,
                 "model": table.model, "table": self.relation.name}
        if changed is not None:
            event["changed"] = changed
        event["channel"] = table.channel
        return event


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
