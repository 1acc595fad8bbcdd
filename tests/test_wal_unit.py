"""The WAL source's pure parts, without a server: text values as to_jsonb renders them, the
protocol's framing, xid8 from a 32-bit xid, and the event ids of one WAL record's rows."""

import struct

import pytest

from pgnotify.listener import exactjson
from pgnotify.listener.wal.changes import commit_ts, full_xid
from pgnotify.listener.wal.protocol import UNCHANGED, Keepalive, lsn_text, parse_copy_data, parse_lsn, status_update
from pgnotify.listener.wal.values import (
    array_of,
    as_float,
    as_json,
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
