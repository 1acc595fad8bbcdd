"""The WAL source's pure parts, without a server: text values as to_jsonb renders them, the
protocol's framing, xid8 from a 32-bit xid, events of a table with several targets and a
composite key."""

import struct

import pytest

from pgnotify.listener import exactjson
from pgnotify.listener.keys import pairing_key
from pgnotify.listener.wal.changes import Shape, WalTarget, commit_ts, full_xid
from pgnotify.listener.wal.inserts import insert_events
from pgnotify.listener.wal.protocol import (
    UNCHANGED,
    Change,
    Column,
    Keepalive,
    Relation,
    lsn_text,
    parse_copy_data,
    parse_lsn,
    status_update,
)
from pgnotify.listener.wal.values import (
    array_of,
    as_bool,
    as_float,
    as_json,
    as_jsonb,
    as_numeric,
    as_text,
    as_timestamp,
    as_timestamptz,
)

# (converter, pgoutput's text of the value, to_jsonb's text of the same value): PostgreSQL's own
# renderings (PostgreSQL 15 and 18 agree on each).
NUMBERS = [
    (as_numeric, "42", "42"), (as_numeric, "-7", "-7"), (as_numeric, "99.9000000000", "99.9000000000"),
    (as_numeric, "-0.0000000001", "-0.0000000001"), (as_numeric, "0.00", "0.00"),
    (as_numeric, "123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
    (as_numeric, "18446744073709551616", "18446744073709551616"),
    (as_numeric, "NaN", '"NaN"'), (as_numeric, "Infinity", '"Infinity"'), (as_numeric, "-Infinity", '"-Infinity"'),
    (as_float, "0.1", "0.1"), (as_float, "0.30000000000000004", "0.30000000000000004"), (as_float, "100", "100"),
    (as_float, "-0", "0"), (as_float, "1e+100", "1" + "0" * 100), (as_float, "1.5e-07", "0.00000015"),
    (as_float, "1e-05", "0.00001"), (as_float, "3.4e+38", "34" + "0" * 37),
    (as_float, "5e-324", "0." + "0" * 323 + "5"),
    (as_float, "NaN", '"NaN"'), (as_float, "Infinity", '"Infinity"'), (as_float, "-Infinity", '"-Infinity"'),
]


@pytest.mark.parametrize(("convert", "text", "jsonb_text"), NUMBERS)
def test_numbers_are_what_the_exact_parse_of_to_jsonb_gives(convert, text, jsonb_text):
    # The same type and the same digits (Decimal's repr shows its exponent: 1.50 is not 1.5).
    assert repr(convert(text)) == repr(exactjson.loads(jsonb_text))


@pytest.mark.parametrize(("text", "json_text"), [
    ("2026-11-27 10:00:00.5+00", "2026-11-27T10:00:00.5+00:00"),
    ("2026-11-27 10:00:00-05", "2026-11-27T10:00:00-05:00"),
    ("2026-11-27 15:30:00+05:30", "2026-11-27T15:30:00+05:30"),
    ("1800-01-01 10:00:00+00:53:28", "1800-01-01T10:00:00+00:53:28"),
    ("0044-03-15 10:00:00+00 BC", "0044-03-15T10:00:00+00:00 BC"),
    ("infinity", "infinity"), ("-infinity", "-infinity"),
])
def test_timestamptz_takes_the_iso_8601_form_with_minutes(text, json_text):
    assert as_timestamptz(text) == json_text


def test_arrays_become_nested_lists_with_their_elements_rendered():
    ints, texts = array_of(int), array_of(as_text)
    assert ints("{}") == [] and ints("{1,NULL,-3}") == [1, None, -3]
    assert ints("{{1,2},{3,NULL}}") == [[1, 2], [3, None]] and ints("[0:1][1:2]={{1,2},{3,4}}") == [[1, 2], [3, 4]]
    assert texts('{"a b","c\\"d",NULL,"NULL","\\\\x"}') == ["a b", 'c"d', None, "NULL", "\\x"]
    assert array_of(as_timestamp)('{"2026-01-01 00:00:00"}') == ["2026-01-01T00:00:00"]
    assert array_of(as_text, ";")("{(1,2),(3,4);(5,6),(7,8)}") == ["(1,2),(3,4)", "(5,6),(7,8)"]


def test_json_is_held_as_jsonb_holds_it():
    big = "123456789012345678901"
    value = as_json('{"b": 1, "a": 2, "b": 3, "n": 1.0e2, "x": 1.50, "e": 1E-7, "z": -0.0, "big": ' + big + "}")
    # What to_jsonb gives for that json, parsed exactly.
    jsonb = exactjson.loads('{"a": 2, "b": 3, "e": 0.0000001, "n": 100, "x": 1.50, "z": 0.0, "big": ' + big + "}")
    assert repr(value) == repr(jsonb) and list(value) == list(jsonb)
    assert list(as_json('{"bb": 1, "a": 2, "c": 3}')) == ["a", "c", "bb"]  # by length, then bytes


def test_replication_framing():
    assert parse_lsn(lsn_text(0x16B374D848)) == 0x16B374D848 and lsn_text(0x100000010) == "1/10"
    kind, written, flushed, applied, _, reply = struct.unpack("!cQQQq?", status_update(77, reply=True))
    assert (kind, written, flushed, applied, reply) == (b"r", 77, 77, 77, True)
    assert parse_copy_data(struct.pack("!cQq?", b"k", 1234, 0, True)) == (0, Keepalive(1234, True))
    with pytest.raises(ValueError, match="unexpected replication message"):
        parse_copy_data(b"x")


def test_an_insert_message_and_its_unchanged_toasted_value():
    tuple_data = struct.pack("!H", 3) + b"t" + struct.pack("!i", 2) + b"17" + b"n" + b"u"
    message = b"w" + struct.pack("!QQq", 500, 600, 0) + b"I" + struct.pack("!I", 16384) + b"N" + tuple_data
    lsn, change = parse_copy_data(message)
    assert (lsn, change.op, change.relation_oid, change.new) == (500, "INSERT", 16384, ["17", None, UNCHANGED])


def test_xid8_from_a_32_bit_xid_across_an_epoch():
    epoch = 5 << 32
    assert full_xid(100, epoch + 200) == epoch + 100
    assert full_xid(300, epoch + 200) == epoch + 300  # committed after the next xid was read
    assert full_xid(0xFFFFFFF0, epoch + 5) == epoch - 16  # the previous epoch


def test_commit_time_is_rendered_as_jsonb_renders_a_timestamptz_in_utc():
    assert commit_ts(0) == "2000-01-01T00:00:00+00:00"
    assert commit_ts(1_500_000) == "2000-01-01T00:00:01.5+00:00"
    assert commit_ts(123) == "2000-01-01T00:00:00.000123+00:00"


def test_a_change_makes_an_event_per_target_with_its_columns_and_none_when_it_changed_nothing_visible():
    # REPLICA IDENTITY FULL: pgoutput flags every column as the key.
    relation = Relation(16384, "public", "items", "f", [Column(name, 23 if name in ("tenant", "val") else 25, True)
                                                         for name in ("tenant", "code", "val", "secret")])
    converters = [int, as_text, int, as_text]
    targets = WalTarget("base", "app.item"), WalTarget("proxy", "app.proxyitem", frozenset({"secret"}))
    base, proxy = (Shape.of(relation, target, "items", ("tenant", "code"), converters) for target in targets)
    old = ["1", "a", "0", "s1"]

    def events(new, old=old, op="UPDATE", key_only=False):
        change = Change(op, 16384, new, old, key_only)
        return [shape.event(change, 7, "ts", 5) for shape in (base, proxy)]

    only_secret = events(["1", "a", "0", "s2"])
    assert only_secret[0]["changed"] == ["secret"] and only_secret[1] is None
    assert events(list(old)) == [None, None]  # an UPDATE that changed nothing
    new_key = events(["1", "b", "0", "s1"])
    assert [e["changed"] for e in new_key] == [["tenant", "code", "val", "secret"], ["tenant", "code", "val"]]
    assert [e["pk"] for e in new_key] == [{"code": "b", "tenant": 1}] * 2
    assert list(new_key[0]["pk"]) == ["code", "tenant"]  # jsonb's key order
    assert [(e["channel"], e["model"], e["table"]) for e in new_key] == [("base", "app.item", "items"),
                                                                          ("proxy", "app.proxyitem", "items")]
    # A partition without FULL identity: the old row is the key, its other columns sent as NULL.
    deleted = events(None, ["1", "a", None, None], op="DELETE", key_only=True)
    assert [e["row"] for e in deleted] == [{"code": "a", "tenant": 1}] * 2
    assert "changed" not in events(["1", "a", "3", "s1"], ["1", "a", None, None], key_only=True)[1]


def test_rows_are_paired_on_the_models_key_or_on_the_tables_own_key_holding_it():
    assert pairing_key(("id",), [("id",)]) == ("id",)
    assert pairing_key(("tenant", "code"), [("tenant", "code"), ("code",)]) == ("tenant", "code")
    # A table partitioned on ts must be keyed (id, ts): the model's key is in it.
    assert pairing_key(("id",), [("id", "ts")]) == ("id", "ts")
    assert pairing_key(("id",), [("ts", "v"), ("v", "id", "ts"), ("id", "ts")]) == ("v", "id", "ts")  # the first
    assert pairing_key(("id",), [("ts", "v")]) is None and pairing_key(("id",), []) is None


def test_a_change_of_the_tables_own_key_changes_every_column_and_pk_stays_the_models():
    relation = Relation(16384, "public", "samples", "f", [Column(name, 23 if name != "ts" else 1082, True)
                                                           for name in ("id", "ts", "v")])
    shape = Shape.of(relation, WalTarget("samples", "app.sample"), "samples", ("id",), [int, as_text, int],
                     ("id", "ts"))

    def update(new):
        return shape.event(Change("UPDATE", 16384, new, ["1", "2026-01-05", "0"], False), 7, "ts", 5)

    assert (update(["1", "2026-01-05", "1"])["changed"], update(["1", "2026-01-05", "1"])["pk"]) == (["v"], 1)
    assert (update(["1", "2026-01-06", "0"])["changed"], update(["1", "2026-01-06", "0"])["pk"]) == (
        ["id", "ts", "v"], 1)


def _insert_message(oid: int, values: list) -> bytes:
    tuple_data = struct.pack("!H", len(values))
    for value in values:
        tuple_data += b"n" if value is None else b"t" + struct.pack("!i", len(value.encode())) + value.encode()
    return b"w" + struct.pack("!QQq", 500, 600, 0) + b"I" + struct.pack("!I", oid) + b"N" + tuple_data


@pytest.mark.parametrize("key", [("id",), ("tenant", "id"), ("secret",)])
def test_an_inserts_own_function_makes_the_events_the_general_path_makes(key):
    types = {"id": 20, "tenant": 23, "name": 1043, "total": 1700, "at": 1184, "ok": 16, "tags": 1009,
             "doc": 3802, "ratio": 701, "day": 1082, "secret": 25}
    relation = Relation(16384, "public", "items", "f", [Column(name, oid, True) for name, oid in types.items()])
    converters = [int, int, as_text, as_numeric, as_timestamptz, as_bool, array_of(as_text), as_jsonb, as_float,
                  as_text, as_text]
    targets = WalTarget("base", "app.item"), WalTarget("proxy", "app.proxyitem", frozenset({"secret", "total"}))
    shapes = tuple(Shape.of(relation, target, "items", key, converters) for target in targets)
    make = insert_events(shapes)
    rows = [
        ["1", "7", "a b", "99.90", "2026-11-30 10:00:00.5+00", "t", '{x,"y z"}', '{"b": 1, "a": [1.50]}', "1e+100",
         "2026-11-30", "s"],
        ["18446744073709551616", "-3", "é ✓", "NaN", "2026-11-30 10:00:00-05", "f", "{}", "null", "-0", "infinity",
         ""],
        ["2"] + [None] * 10,
    ]
    for row in rows:
        message = _insert_message(16384, row)
        _, change = parse_copy_data(message)
        expected = [shape.event(change, 500 + number, "ts", 5) for number, shape in enumerate(shapes)]
        made = make(message, 500, "ts", 5)
        assert repr(made) == repr(expected)
        assert [list(event) for event in made] == [list(event) for event in expected]  # the keys' order too


def test_an_inserts_own_function_leaves_to_the_general_path_what_it_does_not_read():
    relation = Relation(16384, "public", "docs", "f", [Column("id", 20, True), Column("doc", 3802, True)])
    (shape,) = shapes = (Shape.of(relation, WalTarget("docs", "app.doc"), "docs", ("id",), [int, as_jsonb]),)
    make = insert_events(shapes)
    deep = "[" * 2000 + "]" * 2000  # values.AsText: carried as its JSON text, by the general path
    unchanged = _insert_message(16384, ["1", None])[:-1] + b"u"  # never in an Insert
    for message in (_insert_message(16384, ["1", deep]), _insert_message(16384, ["1"]),
                    _insert_message(16384, ["1", "2", "3"]), unchanged):
        with pytest.raises(ValueError):
            make(message, 500, "ts", 5)
    _, change = parse_copy_data(_insert_message(16384, ["1", deep]))
    assert shape.event(change, 500, "ts", 5)["as_text"] == ["doc"]
