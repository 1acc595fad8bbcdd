"""The streaming replication protocol and pgoutput's messages (proto_version 1), decoded.

A CopyData message from the server is XLogData ('w': start LSN, server's end LSN, send time, then
one pgoutput message) or a keepalive ('k': server's end LSN, send time, reply requested). The
client answers with standby status updates ('r'). pgoutput's messages: Begin, Commit, Relation,
Type, Insert, Update, Delete, Truncate, Origin, Message; a tuple is a list of column values, each
None (NULL), UNCHANGED (a TOASTed value the change did not touch) or its text.
"""

import struct
import time
from dataclasses import dataclass

# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_US = 946_684_800_000_000

_LSN = struct.Struct("!Q")
_KEEPALIVE = struct.Struct("!Qq?")
_STATUS = struct.Struct("!cQQQq?")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_OID = struct.Struct("!I")
_INT16 = struct.Struct("!H")
_INT32 = struct.Struct("!i")
# An XLogData's start LSN and, when it holds an Insert, the Insert's relation.
INSERT_HEAD = struct.Struct("!Q17xI")


class _Unchanged:
    """An unchanged TOASTed value: pgoutput does not send it (the old tuple may have it)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def status_update(lsn: int, reply: bool = False) -> bytes:
    """Standby status update: written, flushed and applied up to `lsn`."""
    now_us = int(time.time() * 1_000_000) - PG_EPOCH_US
    return _STATUS.pack(b"r", lsn, lsn, lsn, now_us, reply)


@dataclass(slots=True)
class Column:
    name: str
    type_oid: int
    key: bool


@dataclass(slots=True)
class Relation:
    oid: int
    schema: str
    name: str
    replica_identity: str  # 'd' default, 'f' full, 'i' index, 'n' nothing
    columns: list[Column]


@dataclass(slots=True)
class Begin:
    commit_lsn: int
    commit_time_us: int  # since PostgreSQL's epoch
    xid: int


@dataclass(slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int


@dataclass(slots=True)
class Change:
    op: str  # INSERT, UPDATE, DELETE
    relation_oid: int
    new: list | None
    old: list | None  # the old tuple ('O', REPLICA IDENTITY FULL) or key ('K'), when sent
    key_only: bool = False  # `old` is the key ('K'): the other columns are sent as NULL


@dataclass(slots=True)
class Truncate:
    relation_oids: list[int]


@dataclass(slots=True)
class Keepalive:
    wal_end: int
    reply: bool


class Ignored:
    """Type, Origin and Message: nothing the listener uses."""


IGNORED = Ignored()

Message = Begin | Commit | Relation | Change | Truncate | Keepalive | Ignored


def parse_copy_data(data: bytes) -> tuple[int, Message]:
    """(start LSN, message) of an XLogData; (0, Keepalive) of a keepalive."""
    kind = data[0]
    if kind == 0x77:  # 'w'
        (start,) = _LSN.unpack_from(data, 1)
        if data[25] == 0x49:  # an Insert, the listener's hot path
            (oid,) = _OID.unpack_from(data, 26)
            return start, Change("INSERT", oid, parse_tuple(data, 31)[0], None)
        return start, parse_message(data, 25)
    if kind == 0x6B:  # 'k'
        wal_end, _, reply = _KEEPALIVE.unpack_from(data, 1)
        return 0, Keepalive(wal_end, reply)
    raise ValueError(f"unexpected replication message {chr(kind)!r}")


def parse_message(data: bytes, at: int) -> Message:
    kind = data[at]
    at += 1
    if kind == 0x49:  # 'I' Insert: relation, 'N', tuple
        (oid,) = _OID.unpack_from(data, at)
        new, _ = parse_tuple(data, at + 5)
        return Change("INSERT", oid, new, None)
    if kind == 0x55:  # 'U' Update: relation, optional 'K'/'O' tuple, 'N' tuple
        (oid,) = _OID.unpack_from(data, at)
        at += 4
        old, key_only = None, data[at] == 0x4B
        if key_only or data[at] == 0x4F:
            old, at = parse_tuple(data, at + 1)
        new, _ = parse_tuple(data, at + 1)
        return Change("UPDATE", oid, new, old, key_only)
    if kind == 0x44:  # 'D' Delete: relation, 'K'/'O' tuple
        (oid,) = _OID.unpack_from(data, at)
        old, _ = parse_tuple(data, at + 5)
        return Change("DELETE", oid, None, old, data[at + 4] == 0x4B)
    if kind == 0x42:  # 'B'
        return Begin(*_BEGIN.unpack_from(data, at))
    if kind == 0x43:  # 'C'
        _, commit_lsn, end_lsn, _ = _COMMIT.unpack_from(data, at)
        return Commit(commit_lsn, end_lsn)
    if kind == 0x52:  # 'R'
        return _parse_relation(data, at)
    if kind == 0x54:  # 'T' Truncate: count, options, relations
        (count,) = _INT32.unpack_from(data, at)
        return Truncate(list(struct.unpack_from(f"!{count}I", data, at + 5)))
    if kind in (0x59, 0x4F, 0x4D):  # 'Y' Type, 'O' Origin, 'M' Message
        return IGNORED
    raise ValueError(f"unexpected pgoutput message {chr(kind)!r}")


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\0", at)
    return data[at:end].decode(), end + 1


def _parse_relation(data: bytes, at: int) -> Relation:
    (oid,) = _OID.unpack_from(data, at)
    schema, at = _cstring(data, at + 4)
    name, at = _cstring(data, at)
    identity = chr(data[at])
    (count,) = _INT16.unpack_from(data, at + 1)
    at += 3
    columns = []
    for _ in range(count):
        flags = data[at]
        column_name, at = _cstring(data, at + 1)
        type_oid, _ = struct.unpack_from("!Ii", data, at)
        at += 8
        columns.append(Column(column_name, type_oid, bool(flags & 1)))
    return Relation(oid, schema, name, identity, columns)


def parse_tuple(data: bytes, at: int) -> tuple[list, int]:
    """A TupleData at `at`: its values (None, UNCHANGED or text) and the index after it."""
    count = (data[at] << 8) | data[at + 1]
    at += 2
    values: list = []
    append = values.append
    unpack_length = _INT32.unpack_from
    for _ in range(count):
        kind = data[at]
        if kind == 0x74:  # 't' text: a 4-byte length, then the text
            (length,) = unpack_length(data, at + 1)
            at += 5
            append(data[at:at + length].decode())
            at += length
        elif kind == 0x6E:  # 'n' NULL
            append(None)
            at += 1
        elif kind == 0x75:  # 'u' unchanged TOASTed value
            append(UNCHANGED)
            at += 1
        else:
            raise ValueError(f"unexpected tuple value kind {chr(kind)!r}")
    return values, at
